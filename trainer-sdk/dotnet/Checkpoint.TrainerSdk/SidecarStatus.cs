namespace Checkpoint.TrainerSdk;

/// <summary>The sidecar's view of the pod, as returned by <see cref="CheckpointClient.GetStatusAsync"/>.</summary>
/// <param name="GracePeriod">The grace period the sidecar plans preemption flushes against.</param>
/// <param name="Trainers">The trainer processes attached right now.</param>
/// <param name="Terminating">Whether a preemption flush is under way or has ended.</param>
/// <param name="LastCommittedCheckpointId">The newest committed checkpoint, if any.</param>
/// <param name="LastFlush">Timings of the last flush, if one has run.</param>
public sealed record SidecarStatus(
    TimeSpan GracePeriod,
    IReadOnlyList<AttachedTrainer> Trainers,
    bool Terminating,
    string? LastCommittedCheckpointId,
    CheckpointTimings? LastFlush);

/// <summary>One trainer process attached to the sidecar.</summary>
/// <param name="TrainerId">
/// Always empty: the sidecar does not tell one process another's identifier (an identifier is honoured only from the
/// process that attached). Kept so code that reads it still compiles; this process's own is <see cref="CheckpointClient.TrainerId"/>.
/// </param>
/// <param name="Rank">The rank the process attached with.</param>
/// <param name="Description">What the process said about itself when attaching.</param>
public sealed record AttachedTrainer(string TrainerId, int Rank, string Description);
