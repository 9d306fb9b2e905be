namespace Checkpoint.Sidecar.Flush;

public enum CheckpointReason
{
    Preemption,
    Periodic,
    Manual,
}

public enum CheckpointStatus
{
    Committed,
    Failed,
    Superseded,
}

/// <summary>Why a flush failed; the values are the <c>cause</c> label of the failure metric.</summary>
public enum FlushFailureCause
{
    DeadlineExceeded,
    VerificationFailed,
    StorageError,
    TrainerLost,

    /// <summary>This pod's shard was sealed, but shards of other ranks of the world were missing at the deadline.</summary>
    JobIncomplete,
}

/// <summary>What a preemption flush was started by; the first trigger wins, later ones join it.</summary>
public enum TerminationSource
{
    /// <summary>The sidecar's own SIGTERM (a regular sidecar container).</summary>
    Signal,

    /// <summary>`checkpoint-sidecar prestop` from a container's preStop hook (a native sidecar).</summary>
    PreStopHook,

    /// <summary>The pod watch saw deletionTimestamp or a DisruptionTarget condition.</summary>
    PodWatch,

    /// <summary>The trainer SDK caught SIGTERM itself.</summary>
    TrainerNotice,
}

/// <summary>Each phase of one flush, measured against the grace period.</summary>
/// <param name="ReadBackBytes">Of <paramref name="Bytes"/>, those read back before the commit (the rest: write-hash); null when not known (an older flush record).</param>
public sealed record FlushTimings(
    string CheckpointId,
    CheckpointReason Reason,
    TimeSpan Notify,
    TimeSpan Dump,
    TimeSpan Copy,
    TimeSpan Verify,
    TimeSpan Commit,
    TimeSpan Total,
    TimeSpan Budget,
    long Bytes,
    TimeSpan CommitWait = default,
    long? ReadBackBytes = null)
{
    /// <summary>total / G; above 1 the flush could not have finished before SIGKILL.</summary>
    public double BudgetUsedRatio => Budget > TimeSpan.Zero ? Total / Budget : double.PositiveInfinity;

    public double ThroughputBytesPerSecond => Copy > TimeSpan.Zero ? Bytes / Copy.TotalSeconds : 0;
}

public sealed record CheckpointOutcome(
    string CheckpointId,
    CheckpointStatus Status,
    string? Directory,
    long? Step,
    string? Error,
    FlushFailureCause? FailureCause,
    FlushTimings? Timings)
{
    /// <summary>Ranks of the world with no sealed shard when a job-wide checkpoint failed.</summary>
    public IReadOnlyList<int> MissingRanks { get; init; } = [];
}

/// <summary>What a trainer is told to do when it must dump a checkpoint.</summary>
/// <param name="Drill">A preemption drill's dump: written at once, then training carries on.</param>
public sealed record DumpCommand(string CheckpointId, CheckpointReason Reason, DateTimeOffset? Deadline, string StagingDirectory, bool Drill = false);

public static class CheckpointReasonNames
{
    /// <summary>The lowercase word used in manifests, metric labels and checkpoint ids.</summary>
    public static string ToLabel(this CheckpointReason reason) => reason switch
    {
        CheckpointReason.Preemption => "preemption",
        CheckpointReason.Periodic => "periodic",
        CheckpointReason.Manual => "manual",
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };

    public static CheckpointReason? FromLabel(string label) => label switch
    {
        "preemption" => CheckpointReason.Preemption,
        "periodic" => CheckpointReason.Periodic,
        "manual" => CheckpointReason.Manual,
        _ => null,
    };

    public static string ToLabel(this FlushFailureCause cause) => cause switch
    {
        FlushFailureCause.DeadlineExceeded => "deadline_exceeded",
        FlushFailureCause.VerificationFailed => "verification_failed",
        FlushFailureCause.StorageError => "storage_error",
        FlushFailureCause.TrainerLost => "trainer_lost",
        FlushFailureCause.JobIncomplete => "job_incomplete",
        _ => throw new ArgumentOutOfRangeException(nameof(cause), cause, null),
    };
}
