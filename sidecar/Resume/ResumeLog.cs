using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Resume;

internal static partial class ResumeLog
{
    [LoggerMessage(EventId = 500, Level = LogLevel.Error, Message = "Looking for the checkpoint to resume from made no progress for {Seconds:F0} s (is the checkpoint storage stalled?): its callers get an error, and the next question starts a fresh lookup")]
    public static partial void LookupStalled(ILogger logger, double seconds);
}
