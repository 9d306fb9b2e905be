using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Injection;

internal static partial class InjectionLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Checkpoint sidecar injector ready: https://*:{Port}/mutate, image {Image}, mode {Mode}")]
    public static partial void Ready(ILogger logger, int port, string image, string mode);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Admission of {Pod}: {Outcome}")]
    public static partial void Reviewed(ILogger logger, string pod, string outcome);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Admission refused: {Message}")]
    public static partial void Refused(ILogger logger, string message);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Bad admission request: {Problem}")]
    public static partial void BadRequest(ILogger logger, string problem);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Serving certificate loaded from {CertificatePath} (expires {NotAfter:O})")]
    public static partial void CertificateLoaded(ILogger logger, string certificatePath, DateTime notAfter);
}
