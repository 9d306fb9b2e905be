namespace Checkpoint.TrainerSdk;

/// <summary>How a checkpoint ended.</summary>
public enum CheckpointStatus
{
    /// <summary>The sidecar did not say; only seen when talking to an older or newer sidecar.</summary>
    Unspecified = 0,

    /// <summary>The checkpoint is on shared storage and will be offered for resume.</summary>
    Committed = 1,

    /// <summary>The checkpoint could not be persisted; <see cref="CheckpointOutcome.Error"/> says why.</summary>
    Failed = 2,

    /// <summary>A newer checkpoint replaced this one before it was persisted; nothing was lost.</summary>
    Superseded = 3,
}

/// <summary>The end of one checkpoint, as returned by <see cref="CheckpointClient.WaitForCheckpointAsync"/>.</summary>
/// <param name="CheckpointId">The checkpoint this outcome is about.</param>
/// <param name="Status">Whether the checkpoint was committed, failed or superseded.</param>
/// <param name="Directory">Absolute path of the committed checkpoint on shared storage; empty unless committed.</param>
/// <param name="Step">The training step the checkpoint holds.</param>
/// <param name="Error">Why the checkpoint failed, for people; <see langword="null"/> unless <see cref="CheckpointStatus.Failed"/>.</param>
/// <param name="Timings">Where the time went, when the sidecar measured it.</param>
public sealed record CheckpointOutcome(
    string CheckpointId,
    CheckpointStatus Status,
    string Directory,
    long Step,
    string? Error,
    CheckpointTimings? Timings)
{
    /// <summary>
    /// The ranks of the world that had no sealed shard when a job-wide checkpoint failed (the pods that failed or missed the
    /// deadline), in the order the sidecar named them; empty otherwise, and always for a single-pod job.
    /// </summary>
    public IReadOnlyList<int> MissingRanks { get; init; } = [];

    /// <summary>
    /// The job's recommended checkpoint interval as the sidecar knew it when answering (the newest, not that checkpoint's);
    /// <see langword="null"/> while not known. <see cref="CheckpointClient.RecommendedInterval"/> keeps the latest.
    /// </summary>
    public TimeSpan? RecommendedInterval { get; init; }
}

/// <summary>Where the time of one checkpoint flush went, measured by the sidecar.</summary>
/// <param name="CheckpointId">The checkpoint measured.</param>
/// <param name="Reason">Why the checkpoint was taken.</param>
/// <param name="Notify">From the trigger until the dump request had reached every trainer.</param>
/// <param name="Dump">From the dump request until the last rank reported its files.</param>
/// <param name="Copy">Copying the files to shared storage.</param>
/// <param name="Verify">Checking the copied files.</param>
/// <param name="Commit">Making the checkpoint visible for resume; in a job-wide checkpoint it includes <see cref="CommitWait"/>.</param>
/// <param name="Total">From the trigger to the commit.</param>
/// <param name="Budget">The grace period the flush was measured against.</param>
/// <param name="BudgetUsedRatio"><see cref="Total"/> divided by <see cref="Budget"/>; above 1 means the flush overran.</param>
/// <param name="Bytes">Bytes persisted.</param>
public sealed record CheckpointTimings(
    string CheckpointId,
    CheckpointReason Reason,
    TimeSpan Notify,
    TimeSpan Dump,
    TimeSpan Copy,
    TimeSpan Verify,
    TimeSpan Commit,
    TimeSpan Total,
    TimeSpan Budget,
    double BudgetUsedRatio,
    long Bytes)
{
    /// <summary>
    /// Part of <see cref="Commit"/>: from this pod's shard being sealed to the job-wide commit, that is waiting for the other
    /// pods' shards. Zero for a single-pod job.
    /// </summary>
    public TimeSpan CommitWait { get; init; }
}
