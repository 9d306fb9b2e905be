using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Flush;

internal static partial class FlushLog
{
    [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "Preemption flush {CheckpointId} started ({Cause}); deadline {Deadline:O} ({SecondsLeft:F1} s left of {GraceSeconds:F0} s grace); dump requested from {Trainers} trainer(s)")]
    public static partial void PreemptionStarted(ILogger logger, string checkpointId, string cause, DateTimeOffset deadline, double secondsLeft, double graceSeconds, int trainers);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "Termination trigger {Source} joined the preemption flush already under way")]
    public static partial void TriggerJoined(ILogger logger, TerminationSource source);

    [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "Termination requested by {Source} but no trainer is attached: nothing to flush")]
    public static partial void NothingToFlush(ILogger logger, TerminationSource source);

    [LoggerMessage(EventId = 249, Level = LogLevel.Information, Message = "Termination requested by {Source} after every trainer detached: training has ended, shutting down (not a preemption)")]
    public static partial void TrainingEnded(ILogger logger, TerminationSource source);

    [LoggerMessage(EventId = 203, Level = LogLevel.Information, Message = "Flush {CheckpointId}: {Bytes} of {TotalBytes} bytes copied, {RateMBps:F0} MB/s, {SecondsLeft:F1} s to the deadline")]
    public static partial void Progress(ILogger logger, string checkpointId, long bytes, long totalBytes, double rateMBps, double secondsLeft);

    [LoggerMessage(EventId = 204, Level = LogLevel.Information, Message = "Checkpoint {CheckpointId} ({Reason}, step {Step}) committed to {Directory}: notify {Notify:F3} s, dump {Dump:F3} s, copy {Copy:F3} s, verify {Verify:F3} s, commit {Commit:F3} s, total {Total:F3} s of {Budget:F0} s grace ({Ratio:P0}); {Bytes} bytes at {RateMBps:F0} MB/s")]
    public static partial void Committed(ILogger logger, string checkpointId, string reason, long step, string directory, double notify, double dump, double copy, double verify, double commit, double total, double budget, double ratio, long bytes, double rateMBps);

    [LoggerMessage(EventId = 205, Level = LogLevel.Error, Message = "Checkpoint {CheckpointId} ({Reason}) failed ({Cause}): {Error}; the previous checkpoint stays the latest")]
    public static partial void Failed(ILogger logger, string checkpointId, string reason, string cause, string error);

    [LoggerMessage(EventId = 206, Level = LogLevel.Information, Message = "Checkpoint {CheckpointId} ({Reason}) superseded by a newer one")]
    public static partial void Superseded(ILogger logger, string checkpointId, string reason);

    [LoggerMessage(EventId = 207, Level = LogLevel.Warning, Message = "Retention could not remove an old checkpoint: {Error}")]
    public static partial void RetentionFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 208, Level = LogLevel.Information, Message = "Trainer {TrainerId} (rank {Rank}, {Description}) attached")]
    public static partial void Attached(ILogger logger, string trainerId, int rank, string description);

    [LoggerMessage(EventId = 209, Level = LogLevel.Information, Message = "Trainer {TrainerId} (rank {Rank}) detached")]
    public static partial void Detached(ILogger logger, string trainerId, int rank);

    [LoggerMessage(EventId = 210, Level = LogLevel.Warning, Message = "Could not remove staging directory {Directory}: {Error}")]
    public static partial void StagingCleanupFailed(ILogger logger, string directory, string error);

    [LoggerMessage(EventId = 211, Level = LogLevel.Information, Message = "Periodic upload {CheckpointId} may finish before the preemption flush: both fit before the deadline")]
    public static partial void InFlightKept(ILogger logger, string checkpointId);

    [LoggerMessage(EventId = 212, Level = LogLevel.Information, Message = "Report for checkpoint {CheckpointId} from rank {Rank}: {Files} file(s), step {Step}; {Reported} of {Expected} rank(s) reported")]
    public static partial void Reported(ILogger logger, string checkpointId, int rank, int files, long step, int reported, int expected);

    [LoggerMessage(EventId = 213, Level = LogLevel.Warning, Message = "Preemption flush {CheckpointId}: the pod's deletionTimestamp moves the deadline earlier, to {Deadline:O}")]
    public static partial void DeadlineTightened(ILogger logger, string checkpointId, DateTimeOffset deadline);

    [LoggerMessage(EventId = 214, Level = LogLevel.Warning, Message = "Reporting a flush through {Reporter} failed: {Error}")]
    public static partial void ReporterFailed(ILogger logger, string reporter, string error);

    [LoggerMessage(EventId = 230, Level = LogLevel.Error, Message = "Checkpoint {CheckpointId} ({Reason}) not started: {Error}")]
    public static partial void NotStarted(ILogger logger, string checkpointId, string reason, string error);

    [LoggerMessage(EventId = 240, Level = LogLevel.Warning, Message = "Storage has not returned from a call for checkpoint {CheckpointId}, which ended {Status} without it; the call goes on in the background")]
    public static partial void AbandonedToStorage(ILogger logger, string checkpointId, string status);

    [LoggerMessage(EventId = 241, Level = LogLevel.Warning, Message = "Checkpoint {CheckpointId}'s shard was sealed on storage after it had been reported {Status}; this pod does not commit it, and it counts only if another pod publishes its step")]
    public static partial void SealedAfterItsOutcome(ILogger logger, string checkpointId, string status);

    [LoggerMessage(EventId = 242, Level = LogLevel.Error, Message = "Storage call for checkpoint {CheckpointId} failed after the checkpoint had ended: {Error}")]
    public static partial void AbandonedWriteFailed(ILogger logger, string checkpointId, string error);

    [LoggerMessage(EventId = 243, Level = LogLevel.Information, Message = "Checkpoint {CheckpointId}: {StepId} is already committed; nothing is written again")]
    public static partial void StepAlreadyCommitted(ILogger logger, string checkpointId, string stepId);

    [LoggerMessage(EventId = 244, Level = LogLevel.Information, Message = "Job checkpoint {StepId} committed by this pod: {Shards} shard(s) cover all {WorldSize} rank(s)")]
    public static partial void JobCommitPublished(ILogger logger, string stepId, int shards, int worldSize);

    [LoggerMessage(EventId = 245, Level = LogLevel.Information, Message = "Checkpoint {CheckpointId}: this pod's shard of {StepId} is sealed; waiting for rank(s) {MissingRanks} ({Missing} of {WorldSize}) of other pods")]
    public static partial void WaitingForShards(ILogger logger, string checkpointId, string stepId, string missingRanks, int missing, int worldSize);

    [LoggerMessage(EventId = 246, Level = LogLevel.Information, Message = "Job-wide preemption checkpoint {CheckpointId} asked for by rank {Rank} at step {Step}: another pod of the job is being preempted; deadline {Deadline:O}")]
    public static partial void JobPreemptionStarted(ILogger logger, string checkpointId, int rank, long step, DateTimeOffset deadline);

    [LoggerMessage(EventId = 247, Level = LogLevel.Debug, Message = "Checkpoint {CheckpointId}: every rank of {StepId} has a shard; the pod that sealed last writes the job manifest (taken over if it has not in {TakeoverMs} ms)")]
    public static partial void WorldCovered(ILogger logger, string checkpointId, string stepId, double takeoverMs);

    [LoggerMessage(EventId = 248, Level = LogLevel.Trace, Message = "Checkpoint {CheckpointId}: looking at storage again in {PollMs} ms")]
    public static partial void NextPoll(ILogger logger, string checkpointId, double pollMs);

    [LoggerMessage(EventId = 250, Level = LogLevel.Information, Message = "Preemption drill {CheckpointId} started: {SecondsLeft:F1} s to the deadline {Deadline:O} a preemption now would get ({Grace:F0} s grace); dump requested from {Trainers} trainer(s), which carry on training")]
    public static partial void DrillStarted(ILogger logger, string checkpointId, DateTimeOffset deadline, double secondsLeft, double grace, int trainers);
}
