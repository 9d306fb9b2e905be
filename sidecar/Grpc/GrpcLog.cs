using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Grpc;

internal static partial class GrpcLog
{
    [LoggerMessage(EventId = 500, Level = LogLevel.Warning, Message = "{Method} failed on storage: {Error}")]
    public static partial void StorageFailed(ILogger logger, string method, string error);
}
