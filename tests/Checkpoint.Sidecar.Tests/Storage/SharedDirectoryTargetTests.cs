using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// The job-wide commit through shared storage, with several pods simulated by several targets on
/// one job directory: seal, publish when the world is covered, never replace a commit, and resume
/// only what every rank's shard makes whole.
/// </summary>
public sealed class SharedDirectoryTargetTests : IDisposable
{
    private const int BufferSize = JobWideCheckpoints.BufferSize;
    private static readonly JobWorld World = new(2, "run1");
    private static readonly DateTimeOffset Now = JobWideCheckpoints.Now;

    private readonly TempDirectory _temp = new();
    private readonly CheckpointLayout _layout;
    private readonly CheckpointStore _store;
    private readonly JobWideCheckpoints _checkpoints;

    public SharedDirectoryTargetTests()
    {
        _layout = new CheckpointLayout(_temp.CreateDirectory("storage"), "ns", "job");
        _store = new CheckpointStore(_layout, NullLogger<CheckpointStore>.Instance);
        _checkpoints = new JobWideCheckpoints(_temp, _layout);
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task TwoPods_FirstWaitsForTheOther_LastToSealCommitsBoth()
    {
        var podA = Target("pod-a");
        var podB = Target("pod-b");

        var shardA = await SealAsync(podA, step: 7, World, rank: 0, seed: 1);
        var waiting = Assert.IsType<PublishResult.Waiting>(podA.TryPublish(shardA, Now));
        Assert.Equal([1], waiting.MissingRanks);
        Assert.Null(_store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None));

        var shardB = await SealAsync(podB, step: 7, World, rank: 1, seed: 2);
        var byB = Assert.IsType<PublishResult.Committed>(podB.TryPublish(shardB, Now));
        var byA = Assert.IsType<PublishResult.Committed>(podA.TryPublish(shardA, Now));

        Assert.True(byB.PublishedHere);
        Assert.False(byA.PublishedHere);
        Assert.True(byA.IncludesThisShard);
        Assert.Equal(byB.Manifest, byA.Manifest with { Shards = byB.Manifest.Shards });
        Assert.Equal("step-000000007", _store.ReadLatestId());

        var latest = _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None);
        Assert.NotNull(latest);
        Assert.Equal("step-000000007", latest.Id);
        Assert.Equal(2, latest.WorldSize);
        Assert.Equal(TempDirectory.RandomBytes(5000, 1), await File.ReadAllBytesAsync(Path.Combine(latest.DirectoryOf(0), "rank-0", "model.bin")));
        Assert.Equal(TempDirectory.RandomBytes(5000, 2), await File.ReadAllBytesAsync(Path.Combine(latest.DirectoryOf(1), "rank-1", "model.bin")));
        Assert.NotEqual(latest.DirectoryOf(0), latest.DirectoryOf(1));
    }

    [Fact]
    public async Task ShardOfAnotherRun_IsNeverCombined()
    {
        var podA = Target("pod-a");
        var shardA = await SealAsync(podA, step: 7, World, rank: 0, seed: 1);

        await SealAsync(Target("pod-b"), step: 7, World with { Id = "run0" }, rank: 1, seed: 2);

        Assert.Equal([1], Assert.IsType<PublishResult.Waiting>(podA.TryPublish(shardA, Now)).MissingRanks);
    }

    [Fact]
    public async Task ShardWhoseManifestBelieItsName_IsNotCounted()
    {
        var podA = Target("pod-a");
        var shardA = await SealAsync(podA, step: 7, World, rank: 0, seed: 1);
        var shardB = await SealAsync(Target("pod-b"), step: 7, World, rank: 1, seed: 2);
        // The file named for rank 1 now says it holds rank 0: a shard is counted only for what it holds.
        var path = Path.Combine(_layout.ShardsDirectory(7), shardB.Name.FileName);
        await File.WriteAllBytesAsync(path, (shardB.Manifest with { Ranks = [new ManifestRank(0, 7, new Dictionary<string, string>())] }).ToUtf8Json());

        Assert.IsType<PublishResult.Waiting>(podA.TryPublish(shardA, Now));
        Assert.False(File.Exists(Path.Combine(_layout.StepDirectory(7), "manifest.json")));
    }

    [Fact]
    public async Task CommittedManifest_IsNeverReplaced_ByALaterAttempt()
    {
        var podA = Target("pod-a");
        var first = await SealAsync(podA, step: 7, World with { Size = 1 }, rank: 0, seed: 1);
        Assert.True(Assert.IsType<PublishResult.Committed>(podA.TryPublish(first, Now)).PublishedHere);
        var manifestPath = Path.Combine(_layout.StepDirectory(7), "manifest.json");
        var committed = await File.ReadAllBytesAsync(manifestPath);

        var second = await SealAsync(podA, step: 7, World with { Size = 1 }, rank: 0, seed: 9);
        var again = Assert.IsType<PublishResult.Committed>(podA.TryPublish(second, Now.AddMinutes(1)));

        Assert.False(again.PublishedHere);
        Assert.False(again.IncludesThisShard);
        Assert.Equal(committed, await File.ReadAllBytesAsync(manifestPath));
        // The earlier attempt's files are its own directory's, untouched by the later attempt.
        var latest = _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None);
        Assert.Equal(TempDirectory.RandomBytes(5000, 1), await File.ReadAllBytesAsync(Path.Combine(latest!.DirectoryOf(0), "rank-0", "model.bin")));
    }

    [Fact]
    public async Task Resume_ShardFileDamaged_FallsBackToTheOlderCommittedStep()
    {
        await CommitSinglePodAsync(step: 1, seed: 1);
        var newer = await CommitSinglePodAsync(step: 2, seed: 2);
        var rejected = new List<string>();

        FileDamage.FlipBit(Path.Combine(newer.DirectoryOf(0), "rank-0", "model.bin"), 100);
        var found = _store.FindLatestValid(verifyHashes: true, BufferSize, (id, _) => rejected.Add(id), CancellationToken.None);

        Assert.Equal("step-000000001", found?.Id);
        Assert.Equal(["step-000000002"], rejected);
    }

    [Fact]
    public async Task Resume_StepWithoutManifest_IsSkippedWithoutComplaint()
    {
        await CommitSinglePodAsync(step: 1, seed: 1);
        await SealAsync(Target("pod-a"), step: 5, World, rank: 0, seed: 2);
        var rejected = new List<string>();

        var found = _store.FindLatestValid(verifyHashes: true, BufferSize, (id, _) => rejected.Add(id), CancellationToken.None);

        Assert.Equal("step-000000001", found?.Id);
        Assert.Empty(rejected);
    }

    [Theory]
    [InlineData("missing rank")]
    [InlineData("escaping directory")]
    [InlineData("other step")]
    public async Task Resume_JobManifestThatDoesNotHoldTheWorld_IsNotResumedFrom(string damage)
    {
        await CommitSinglePodAsync(step: 1, seed: 1);
        var newer = await CommitSinglePodAsync(step: 2, seed: 2);
        var path = Path.Combine(_layout.StepDirectory(2), "manifest.json");
        var manifest = JobManifest.FromUtf8Json(await File.ReadAllBytesAsync(path));
        var shard = manifest.Shards[0];
        manifest = damage switch
        {
            "missing rank" => manifest with { WorldSize = 2 },
            "escaping directory" => manifest with { Shards = [shard with { Directory = "../step-000000001/" + shard.Directory }] },
            _ => manifest with { Step = 1 },
        };
        File.Delete(path);
        await File.WriteAllBytesAsync(path, manifest.ToUtf8Json());

        var found = _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None);

        Assert.Equal("step-000000001", found?.Id);
        Assert.NotEqual(newer.Id, found?.Id);
    }

    [Fact]
    public async Task Resume_Format1CheckpointsAreStillFound_AndAStepIsPreferred()
    {
        const string legacyId = "20261129T024500123Z-periodic-00000000000000ab";
        await CommitFormat1Async(legacyId);
        Assert.Equal(legacyId, _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);

        await CommitSinglePodAsync(step: 41, seed: 4);

        Assert.Equal("step-000000041", _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task Latest_AFifoOrSymlinkInItsPlace_IsReplacedByTheNextCommit()
    {
        await CommitSinglePodAsync(step: 1, seed: 1);
        File.Delete(_layout.LatestFile);
        Posix.MakeFifo(_layout.LatestFile);

        await CommitSinglePodAsync(step: 2, seed: 2);

        // Read as the sidecar reads storage: a FIFO or a symlink reads as no LATEST, never blocks.
        Assert.Equal("step-000000002", _store.ReadLatestId());

        File.Delete(_layout.LatestFile);
        File.CreateSymbolicLink(_layout.LatestFile, Path.Combine(_layout.StepDirectory(1), "manifest.json"));

        await CommitSinglePodAsync(step: 3, seed: 3);

        Assert.Equal("step-000000003", _store.ReadLatestId());
    }

    [Fact]
    public async Task Latest_NamingANewerStep_IsNotMovedBack()
    {
        await CommitSinglePodAsync(step: 5, seed: 5);
        File.WriteAllText(_layout.LatestFile, "step-000000009\n");

        await CommitSinglePodAsync(step: 6, seed: 6);

        Assert.Equal("step-000000009", _store.ReadLatestId());
    }

    [Fact]
    public async Task Retention_KeepsNewestCommitted_SweepsOlderUncommitted_NeverTouchesNewerUncommitted()
    {
        await CommitFormat1Async("20261129T024500123Z-periodic-00000000000000ab");
        for (var step = 1; step <= 4; step++)
        {
            await CommitSinglePodAsync(step, seed: step);
        }

        await SealAsync(Target("pod-b"), step: 3, World, rank: 1, seed: 30);
        await SealAsync(Target("pod-b"), step: 2, World, rank: 1, seed: 31);
        _ = Directory.CreateDirectory(_layout.StepDirectory(9));
        File.Delete(Path.Combine(_layout.StepDirectory(2), "manifest.json"));

        Target("pod-a").ApplyRetention(keep: 2, committedStep: 4);

        Assert.Equal(["step-000000003", "step-000000004", "step-000000009"], _layout.StepCandidates().Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.Empty(Directory.GetDirectories(_layout.JobDirectory, "*.deleting"));
        Assert.Empty(_layout.CommittedCandidates());
    }

    [Theory]
    [InlineData("forged manifest")]
    [InlineData("symlinked step")]
    public async Task Retention_AHostileNewerStep_NeitherRetiresTheStepJustCommitted_NorStepsOthersAreWriting(string hostile)
    {
        await CommitSinglePodAsync(step: 1, seed: 1);
        await CommitSinglePodAsync(step: 2, seed: 2);
        await SealAsync(Target("pod-b"), step: 3, World, rank: 1, seed: 30);
        var forged = _layout.StepDirectory(999_999_999);
        if (hostile == "forged manifest")
        {
            Directory.CreateDirectory(forged);
            await File.WriteAllTextAsync(Path.Combine(forged, "manifest.json"), "{ \"formatVersion\": 2, \"not\": \"a manifest\" }");
        }
        else
        {
            Directory.CreateSymbolicLink(forged, _layout.StepDirectory(2));
        }

        Target("pod-a").ApplyRetention(keep: 1, committedStep: 2);

        Assert.Equal(["step-000000002", "step-000000003", "step-999999999"], _layout.StepCandidates().Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.Equal("step-000000002", _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task Retention_FewerStepsThanKeep_LeavesFormat1Checkpoints()
    {
        const string legacyId = "20261129T024500123Z-periodic-00000000000000ab";
        await CommitFormat1Async(legacyId);
        await CommitSinglePodAsync(step: 1, seed: 1);

        Target("pod-a").ApplyRetention(keep: 2, committedStep: 1);

        Assert.Equal([legacyId], _layout.CommittedCandidates());
    }

    [Fact]
    public void ShardName_RoundTrips_AndRefusesWhatIsNotOne()
    {
        var name = ShardName.Create("run1", "Trainer_3.Node", "0a1b2c3d", [8, 9, 10, 11, 13]);

        Assert.Equal("run1_trainer-3.node_0a1b2c3d_r8-11.13.json", name.FileName);
        Assert.Equal(name.FileName, ShardName.Parse(name.FileName)?.FileName);
        Assert.Equal([8, 9, 10, 11, 13], ShardName.Parse(name.FileName)!.Ranks);
        Assert.Null(ShardName.Parse(".run1_pod_0a1b2c3d_r0.json.tmp"));
        Assert.Null(ShardName.Parse("run1_pod_0a1b2c3d_r3-1.json"));
        Assert.Null(ShardName.Parse("RUN_pod_0a1b2c3d_r0.json"));
        Assert.Null(ShardName.Parse("run1_pod_x_r0.json"));
    }

    private Task CommitFormat1Async(string legacyId) => _checkpoints.CommitFormat1Async(_store, legacyId);

    private SharedDirectoryTarget Target(string pod) => _checkpoints.Target(pod);

    private Task<SealedShard> SealAsync(SharedDirectoryTarget target, long step, JobWorld world, int rank, int seed) =>
        _checkpoints.SealAsync(target, step, world, rank, seed);

    private async Task<CommittedCheckpoint> CommitSinglePodAsync(long step, int seed)
    {
        var target = Target("pod-a");
        var shard = await SealAsync(target, step, World with { Size = 1 }, rank: 0, seed);
        Assert.IsType<PublishResult.Committed>(target.TryPublish(shard, Now));
        var found = _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None);
        Assert.Equal(CheckpointLayout.StepName(step), found?.Id);
        return found!;
    }
}
