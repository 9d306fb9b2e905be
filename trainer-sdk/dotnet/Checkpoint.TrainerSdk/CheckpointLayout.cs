using System.Globalization;

namespace Checkpoint.TrainerSdk;

/// <summary>
/// The per-rank layout inside a checkpoint. Ranks of one pod share the staging directory, so each writes under its own folder;
/// committed checkpoints keep the layout, which lets a resumed rank find its files again.
/// </summary>
public static class CheckpointLayout
{
    /// <summary>The folder name for a rank's files, <c>rank-&lt;rank&gt;</c>.</summary>
    /// <param name="rank">The rank of the process.</param>
    /// <returns>The folder name, relative to the checkpoint directory.</returns>
    public static string RankFolder(int rank) => "rank-" + rank.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The path of one of a rank's files relative to the checkpoint directory, in the form
    /// <see cref="CheckpointClient.CompleteDumpAsync"/> expects (forward slashes whatever the platform).
    /// </summary>
    /// <param name="rank">The rank of the process.</param>
    /// <param name="fileName">The file name inside the rank's folder, which may itself contain forward slashes.</param>
    /// <returns>For example <c>rank-0/model.bin</c>.</returns>
    public static string RankFile(int rank, string fileName) => RankFolder(rank) + "/" + fileName;
}
