namespace Checkpoint.TrainerSdk;

/// <summary>The newest committed checkpoint, to resume training from.</summary>
/// <param name="Id">The checkpoint's identifier.</param>
/// <param name="Directory">
/// Absolute path of the directory holding the asking rank's files; they lie under it as the trainer wrote them into the
/// staging directory, for example <c>&lt;Directory&gt;/rank-0/model.bin</c>. In a job-wide checkpoint each pod's shard has a
/// directory of its own, so ranks of different pods get different directories.
/// </param>
/// <param name="Step">The training step the checkpoint holds.</param>
/// <param name="Reason">Why the checkpoint was taken.</param>
/// <param name="Created">When the checkpoint was committed, if the sidecar recorded it.</param>
/// <param name="Metadata">The metadata this rank reported with its dump.</param>
/// <param name="TotalBytes">Size of the whole checkpoint, every rank included.</param>
public sealed record LatestCheckpoint(
    string Id,
    string Directory,
    long Step,
    CheckpointReason Reason,
    DateTimeOffset? Created,
    IReadOnlyDictionary<string, string> Metadata,
    long TotalBytes)
{
    /// <summary>
    /// The number of ranks of the world that took the checkpoint: every rank 0..<c>WorldSize</c>-1 has its files in it.
    /// 0 when the sidecar did not say (a sidecar that predates job-wide checkpoints). Compare it with
    /// <see cref="CheckpointClient.WorldSize"/> before loading rank-sharded state into a world of another size.
    /// </summary>
    public int WorldSize { get; init; }

    /// <summary>The folder holding a rank's files in this checkpoint (<c>&lt;Directory&gt;/rank-&lt;rank&gt;</c>).</summary>
    /// <param name="rank">The rank whose folder to name.</param>
    /// <returns>The absolute path of the rank's folder.</returns>
    public string RankDirectory(int rank) => Path.Combine(Directory, CheckpointLayout.RankFolder(rank));
}
