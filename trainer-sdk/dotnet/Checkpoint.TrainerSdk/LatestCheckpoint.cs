namespace Checkpoint.TrainerSdk;

/// <summary>The newest committed checkpoint, to resume training from.</summary>
/// <param name="Id">The checkpoint's identifier.</param>
/// <param name="Directory">
/// Absolute path of the committed checkpoint; the files lie under it as the trainer wrote them into the staging
/// directory, for example <c>&lt;Directory&gt;/rank-0/model.bin</c>.
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
    /// <summary>The folder holding a rank's files in this checkpoint (<c>&lt;Directory&gt;/rank-&lt;rank&gt;</c>).</summary>
    /// <param name="rank">The rank whose folder to name.</param>
    /// <returns>The absolute path of the rank's folder.</returns>
    public string RankDirectory(int rank) => Path.Combine(Directory, CheckpointLayout.RankFolder(rank));
}
