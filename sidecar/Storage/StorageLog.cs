using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Storage;

internal static partial class StorageLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Swept leftover directory {Directory}")]
    public static partial void Swept(ILogger logger, string directory);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Could not remove partial directory {Directory}: {Error}; the next start sweeps it")]
    public static partial void DiscardFailed(ILogger logger, string directory, string error);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "Retention removed checkpoint {CheckpointId}")]
    public static partial void Retired(ILogger logger, string checkpointId);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "Checkpoint {CheckpointId} is not valid and will not be resumed from: {Problem}")]
    public static partial void InvalidCheckpoint(ILogger logger, string checkpointId, string problem);

    [LoggerMessage(EventId = 120, Level = LogLevel.Warning, Message = "Could not remove leftover staging {Directory}: {Error}; it is left in place")]
    public static partial void StagingSweepFailed(ILogger logger, string directory, string error);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "{LatestFile} is not used: {Problem}; the newest valid checkpoint is looked for instead")]
    public static partial void LatestIgnored(ILogger logger, string latestFile, string problem);

    [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "Could not sweep leftover {Path}: {Error}; it is never read, and the next start tries again")]
    public static partial void SweepFailed(ILogger logger, string path, string error);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "Flush record {Path} is skipped: {Problem}")]
    public static partial void FlushRecordSkipped(ILogger logger, string path, string problem);
}
