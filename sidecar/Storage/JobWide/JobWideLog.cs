using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Storage.JobWide;

internal static partial class JobWideLog
{
    [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "The job manifest of {StepId} cannot be read ({Problem}); it is not taken as committed")]
    public static partial void CommittedUnreadable(ILogger logger, string stepId, string problem);

    [LoggerMessage(EventId = 301, Level = LogLevel.Warning, Message = "Shard {Shard} is not counted toward the job commit: {Problem}")]
    public static partial void ShardIgnored(ILogger logger, string shard, string problem);

    [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "LATEST was not moved to {StepId}: {Problem}; resume finds the newest committed step without it")]
    public static partial void LatestNotMoved(ILogger logger, string stepId, string problem);
}
