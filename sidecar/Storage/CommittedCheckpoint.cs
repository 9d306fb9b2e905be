using Checkpoint.Sidecar.Storage.JobWide;

namespace Checkpoint.Sidecar.Storage;

/// <summary>A committed checkpoint whose manifest was read and checked: what a resuming trainer is told.</summary>
/// <param name="Id">The directory's name: <c>step-000001234</c>, or a format-1 checkpoint id.</param>
/// <param name="Directory">The checkpoint's directory (format 1: where every rank's files lie).</param>
/// <param name="WorldSize">Every rank 0..WorldSize-1 has its files in the checkpoint.</param>
/// <param name="Ranks">Where each rank's files lie, and its metadata.</param>
public sealed record CommittedCheckpoint(
    string Id, string Directory, long Step, string Reason, DateTimeOffset Created, int WorldSize, long TotalBytes,
    IReadOnlyDictionary<int, CommittedRank> Ranks)
{
    /// <summary>The directory holding <paramref name="rank"/>'s <c>rank-&lt;r&gt;</c> folder; the checkpoint's own for a rank it lacks.</summary>
    public string DirectoryOf(int rank) => Ranks.TryGetValue(rank, out var found) ? found.Directory : Directory;

    /// <summary>A checkpoint of format 1 (one pod, before job-wide checkpoints): every rank's files in one directory.</summary>
    public static CommittedCheckpoint FromFormat1(string directory, CheckpointManifest manifest) => new(
        manifest.Id, directory, manifest.Step, manifest.Reason, manifest.Created,
        manifest.Ranks.Count == 0 ? 0 : manifest.Ranks.Max(r => r.Rank) + 1, manifest.TotalBytes,
        manifest.Ranks.ToDictionary(r => r.Rank, r => new CommittedRank(directory, r.Metadata)));

    /// <summary>A job-wide checkpoint: each shard's ranks lie in the shard's directory under the step.</summary>
    public static CommittedCheckpoint FromJobManifest(string stepDirectory, JobManifest manifest) => new(
        manifest.Id, stepDirectory, manifest.Step, manifest.Reason, manifest.Created, manifest.WorldSize, manifest.TotalBytes,
        manifest.Shards
            .SelectMany(s => s.Ranks.Select(r => (r.Rank, Location: new CommittedRank(Path.Combine(stepDirectory, s.Directory), r.Metadata))))
            .ToDictionary(r => r.Rank, r => r.Location));
}

/// <param name="Directory">Holds the rank's <c>rank-&lt;r&gt;</c> folder, as the trainer wrote it into staging.</param>
public sealed record CommittedRank(string Directory, IReadOnlyDictionary<string, string> Metadata);
