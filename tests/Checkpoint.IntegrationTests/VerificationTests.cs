using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>A flipped bit on storage is caught, never served as a valid checkpoint.</summary>
public sealed class VerificationTests
{
    /// <remarks>
    /// The mount keeps cached pages across opens, like NFS: reopening alone would read back the
    /// client's own copy of what was written, so this passes only if the sidecar really drops the
    /// cache before verifying.
    /// </remarks>
    [Fact]
    public async Task BitFlippedOnStorageDuringFlush_ReadBackFails_PreviousStaysLatest()
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root, keepCache: true);
        var job = TestDirectories.JobDirectory(faultFs.Backing);
        await using var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint);
        await using var client = await sidecar.ConnectAsync();
        var first = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, first.Status);

        // Storage returns one wrong bit when the copy is read back: what a flaky NFS server or disk does.
        faultFs.SetRules(new FaultRule("flip", "read", "*/step-000000020/*_*/rank-0/model.bin", "flip_bit", Once: false, Offset: 4096));
        var second = await TrainerFiles.CheckpointAsync(client, 20, 0, ("model.bin", 1 << 20));

        Assert.Equal(CheckpointStatus.Failed, second.Status);
        Assert.Contains("verification", second.Error, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(IndependentCheck.StepName(10), IndependentCheck.Latest(job));
        IndependentCheck.AssertVerifies(IndependentCheck.StepDirectory(job, 10));
        // The shard that failed verification was never sealed, and its step never committed.
        var failed = IndependentCheck.StepDirectory(job, 20);
        Assert.False(IndependentCheck.IsCommitted(failed));
        Assert.Empty(IndependentCheck.SealedShards(failed));
        var latest = await client.GetLatestCheckpointAsync();
        Assert.NotNull(latest);
        Assert.Equal(IndependentCheck.StepName(10), latest.Id);
        Assert.Equal(10, latest.Step);
        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Contains("checkpoint_verify_failures_total{stage=\"flush\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("checkpoint_flush_failures_total{cause=\"verification_failed\"} 1", metrics, StringComparison.Ordinal);
    }

    /// <summary>
    /// CHECKPOINT_VERIFY=write-hash trusts the hash taken while writing and the fsync: the same wrong bit
    /// on read-back is not seen by the flush (nothing is read back), and resume, which reads every byte,
    /// still refuses the step.
    /// </summary>
    [Fact]
    public async Task WriteHashMode_NothingIsReadBack_ResumeStillCatchesTheBadBit()
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root, keepCache: true);
        await using var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint,
            overrides: new Dictionary<string, string> { ["CHECKPOINT_VERIFY"] = "write-hash" });
        await using var client = await sidecar.ConnectAsync();
        Assert.Equal(CheckpointStatus.Committed, (await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 1 << 20))).Status);

        faultFs.SetRules(new FaultRule("flip", "read", "*/step-000000020/*_*/rank-0/model.bin", "flip_bit", Once: false, Offset: 4096));
        var second = await TrainerFiles.CheckpointAsync(client, 20, 0, ("model.bin", 1 << 20));

        Assert.Equal(CheckpointStatus.Committed, second.Status);
        Assert.Contains("checkpoint_verify_failures_total{stage=\"flush\"} 0", await sidecar.ScrapeMetricsAsync(), StringComparison.Ordinal);
        var latest = await client.GetLatestCheckpointAsync();
        Assert.Equal(IndependentCheck.StepName(10), latest?.Id);
    }

    [Fact]
    public async Task BitFlippedInCommittedCheckpoint_ResumeSkipsIt()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var older = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, older.Status);
        var newer = await TrainerFiles.CheckpointAsync(client, 20, 0, ("model.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, newer.Status);
        Assert.Equal(IndependentCheck.StepName(20), IndependentCheck.Latest(dirs.JobDirectory()));
        Assert.Equal(IndependentCheck.ShardDirectory(IndependentCheck.StepDirectory(dirs.JobDirectory(), 20), 0), newer.Directory);

        FileDamage.FlipBit(Path.Combine(newer.Directory!, "rank-0", "model.bin"), offset: 12345);

        var latest = await client.GetLatestCheckpointAsync();
        Assert.NotNull(latest);
        Assert.Equal(IndependentCheck.StepName(10), latest.Id);
        Assert.Equal(10, latest.Step);
        Assert.Equal(older.Directory, latest.Directory);
        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Contains("checkpoint_verify_failures_total{stage=\"resume\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OnlyCheckpointCorrupted_ResumeFindsNone()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var only = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 1 << 16));
        FileDamage.FlipBit(Path.Combine(only.Directory!, "rank-0", "model.bin"), offset: 0);

        Assert.Null(await client.GetLatestCheckpointAsync());
    }
}
