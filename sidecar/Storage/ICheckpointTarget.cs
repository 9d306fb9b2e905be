using Checkpoint.Sidecar.Storage.JobWide;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Where checkpoints are persisted, cut the way a job-wide commit needs it: each pod writes and
/// seals its own shard, then any pod publishes the checkpoint once shards cover the whole world.
/// The shared directory (NFS) implements it today; an object store could tomorrow, with the same
/// three steps (put the files, put the shard manifest, create the job manifest if absent).
/// </summary>
internal interface ICheckpointTarget
{
    /// <summary>The job manifest already committed at this step, if one is; null when none is (or it cannot be read).</summary>
    JobManifest? FindCommitted(long step);

    /// <summary>Copies the shard's files to storage and verifies them (by the configured verification).</summary>
    /// <exception cref="VerificationFailedException">A file's bytes on storage differ from what was copied.</exception>
    /// <exception cref="IOException">The storage failed; the message says what was being done.</exception>
    Task<WrittenShard> WriteAsync(ShardRequest request, Action<long>? onBytes, CancellationToken cancellationToken);

    /// <summary>Makes a written shard visible to every pod: its manifest, atomically. Nothing of it changes after.</summary>
    SealedShard Seal(WrittenShard written, ManifestTimings timings, DateTimeOffset now);

    /// <summary>
    /// Commits the step when sealed shards of the world cover every rank (or finds it committed by
    /// another pod); otherwise says which ranks are missing. Never replaces a committed manifest.
    /// </summary>
    /// <param name="mayWrite">
    /// False: only look. A covered world without a manifest is then <see cref="PublishResult.Waiting"/>
    /// with no missing rank, for the pod whose seal covered it is writing the manifest.
    /// </param>
    PublishResult TryPublish(SealedShard shard, DateTimeOffset now, bool mayWrite = true);

    /// <summary>Removes what an attempt wrote that can no longer be committed (best effort; the sweep finishes it).</summary>
    void Discard(ShardName shard, long step);

    /// <summary>
    /// Job-wide retention after this pod committed <paramref name="committedStep"/>: committed steps beyond the
    /// newest <paramref name="keep"/> (never that one), and uncommitted steps older than it.
    /// </summary>
    /// <returns>The names in the job directory that were taken out of it.</returns>
    IReadOnlyList<string> ApplyRetention(int keep, long committedStep);

    /// <summary>The directory holding <paramref name="rank"/>'s files in a committed checkpoint.</summary>
    string DirectoryOf(JobManifest manifest, int rank);
}

/// <summary>One pod's part of a checkpoint: its ranks' reported files at one step of one world.</summary>
/// <param name="Copy">How the files are moved; null: full speed, read back as CHECKPOINT_VERIFY says.</param>
internal sealed record ShardRequest(
    long Step, JobWorld World, string Reason, IReadOnlyList<StagedFile> Files, IReadOnlyList<ManifestRank> Ranks, CopyPolicy? Copy = null);

/// <summary>Files on storage and verified, not yet sealed: invisible to every other pod.</summary>
internal sealed record WrittenShard(ShardName Name, ShardRequest Request, IReadOnlyList<ManifestFile> Files, DateTimeOffset LastCopied);

/// <summary>A shard whose manifest is on storage: it counts toward the job commit.</summary>
internal sealed record SealedShard(ShardName Name, ShardManifest Manifest);

/// <summary>What a publish attempt found.</summary>
internal abstract record PublishResult
{
    /// <param name="PublishedHere">This pod wrote the manifest (else another pod had).</param>
    /// <param name="IncludesThisShard">The committed manifest holds this pod's shard (else an earlier attempt's, or another world's).</param>
    public sealed record Committed(JobManifest Manifest, bool PublishedHere, bool IncludesThisShard) : PublishResult;

    /// <summary>Ranks of the world with no sealed shard yet; none when the world is covered but the manifest is not (yet) there to read.</summary>
    public sealed record Waiting(IReadOnlyList<int> MissingRanks) : PublishResult;
}
