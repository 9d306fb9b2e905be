namespace Checkpoint.TrainerSdk;

/// <summary>
/// The sidecar's request to write one checkpoint: either pushed by the sidecar (a preemption of its pod) or handed back by
/// <see cref="CheckpointClient.BeginCheckpointAsync"/> for a checkpoint the trainer asked for, or by
/// <see cref="CheckpointClient.BeginJobPreemptionCheckpointAsync"/> for a job-wide preemption checkpoint.
/// </summary>
/// <param name="CheckpointId">The checkpoint the files belong to; pass it back through <see cref="CheckpointClient.CompleteDumpAsync"/>.</param>
/// <param name="Reason">Why the checkpoint is taken.</param>
/// <param name="Deadline">
/// When the checkpoint must be committed; <see langword="null"/> when there is no deadline (periodic and manual checkpoints).
/// In a job of many pods, a preemption dump's deadline is what a rank shares with the others through its collective (see
/// <see cref="CheckpointClient.BeginJobPreemptionCheckpointAsync"/>).
/// </param>
/// <param name="StagingDirectory">
/// Absolute path of the directory to write into. Every rank of the pod shares it, so write under
/// <see cref="RankDirectory"/> to keep the ranks' files apart.
/// </param>
public sealed record DumpRequest(string CheckpointId, CheckpointReason Reason, DateTimeOffset? Deadline, string StagingDirectory)
{
    /// <summary>
    /// A preemption drill (<c>checkpoint-sidecar drill</c>), pushed with <see cref="CheckpointReason.Manual"/> and the
    /// deadline a preemption now would get: write it at the next step boundary as a preemption dump, then carry on
    /// training. An init property rather than a positional one, so that the constructor and deconstruction stay as
    /// they were.
    /// </summary>
    public bool Drill { get; init; }

    /// <summary>
    /// The conventional per-rank folder inside <see cref="StagingDirectory"/> (<c>rank-&lt;rank&gt;</c>); the same relative
    /// layout is found under <see cref="LatestCheckpoint.Directory"/> on resume.
    /// </summary>
    /// <param name="rank">The rank whose folder to name.</param>
    /// <returns>The absolute path of the rank's folder; it is not created.</returns>
    public string RankDirectory(int rank) => Path.Combine(StagingDirectory, CheckpointLayout.RankFolder(rank));
}
