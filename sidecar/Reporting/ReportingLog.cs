using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Reporting;

internal static partial class ReportingLog
{
    [LoggerMessage(EventId = 400, Level = LogLevel.Information, Message = "Pushed the final metrics to {Url}")]
    public static partial void Pushed(ILogger logger, string url);

    [LoggerMessage(EventId = 401, Level = LogLevel.Warning, Message = "Could not push metrics to {Url}: {Error}")]
    public static partial void PushFailed(ILogger logger, string url, string error);

    [LoggerMessage(EventId = 402, Level = LogLevel.Information, Message = "The previous flush of this job ({CheckpointId}, {Reason}, {Outcome} by pod {Pod}, budget ratio {Ratio:F2}) is exported as the last flush")]
    public static partial void Restored(ILogger logger, string checkpointId, string reason, string outcome, string pod, double ratio);
}
