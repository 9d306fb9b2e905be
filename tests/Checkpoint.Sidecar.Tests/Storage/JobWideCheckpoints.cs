using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// Writes job-wide checkpoints with the sidecar's own writer (<see cref="SharedDirectoryTarget"/>:
/// copy and verify, seal, publish), several pods simulated by several targets on one job directory.
/// Each rank's file is <c>rank-&lt;r&gt;/model.bin</c>, 5000 random bytes from its seed.
/// </summary>
internal sealed class JobWideCheckpoints(TempDirectory temp, CheckpointLayout layout)
{
    public const int BufferSize = 64 * 1024;
    public const int FileSize = 5000;
    public static readonly DateTimeOffset Now = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    public static readonly ManifestTimings SomeTimings = new(30, 0.1, 0.2, 0.3, 0.4);

    /// <param name="readBack">False: files are committed on their write-side hash (CHECKPOINT_VERIFY=write-hash, or a deadline too close).</param>
    public SharedDirectoryTarget Target(string pod, bool readBack = true) =>
        new(layout, new CheckpointCopier(2, BufferSize, TimeProvider.System, readBack), pod, NullLogger<SharedDirectoryTarget>.Instance);

    /// <summary>One pod's shard of <paramref name="rank"/> at <paramref name="step"/>, sealed but not published.</summary>
    public async Task<SealedShard> SealAsync(SharedDirectoryTarget target, long step, JobWorld world, int rank, int seed)
    {
        var staging = temp.CreateStaging($"20261130T000000000Z-periodic-{seed:x16}");
        var file = $"rank-{rank}/model.bin";
        TempDirectory.WriteFile(staging.Path, file, TempDirectory.RandomBytes(FileSize, seed));
        var staged = StagingValidator.Validate(staging, [file], new HashSet<string>(StringComparer.Ordinal));
        var request = new ShardRequest(step, world, "periodic", staged, [new ManifestRank(rank, step, new Dictionary<string, string> { ["seed"] = $"{seed}" })]);
        var written = await target.WriteAsync(request, null, CancellationToken.None);
        return target.Seal(written, SomeTimings, Now);
    }

    /// <summary>A step committed by one pod holding the whole world of one rank.</summary>
    /// <returns>The committed job manifest.</returns>
    public async Task<JobManifest> CommitSinglePodAsync(long step, int seed, string pod = "pod-a", bool readBack = true)
    {
        var target = Target(pod, readBack);
        var shard = await SealAsync(target, step, new JobWorld(1, "run1"), rank: 0, seed);
        return Assert.IsType<PublishResult.Committed>(target.TryPublish(shard, Now)).Manifest;
    }

    /// <summary>A checkpoint of format 1 (one pod, before job-wide checkpoints) at step 40, committed as sidecars then did.</summary>
    public async Task CommitFormat1Async(CheckpointStore store, string legacyId)
    {
        var staging = temp.CreateStaging();
        TempDirectory.WriteFile(staging.Path, "rank-0/model.bin", TempDirectory.RandomBytes(100, 3));
        var staged = StagingValidator.Validate(staging, ["rank-0/model.bin"], new HashSet<string>(StringComparer.Ordinal));
        var partial = store.CreatePartialDirectory(legacyId);
        var copy = await new CheckpointCopier(1, BufferSize, TimeProvider.System).CopyAndVerifyAsync(staged, partial, null, CancellationToken.None);
        store.Commit(new CheckpointManifest
        {
            FormatVersion = CheckpointManifest.CurrentFormatVersion,
            Id = legacyId,
            Step = 40,
            Created = Now,
            Reason = "periodic",
            Files = copy.Files,
            Ranks = [new ManifestRank(0, 40, new Dictionary<string, string>())],
            Timings = SomeTimings,
        });
    }
}
