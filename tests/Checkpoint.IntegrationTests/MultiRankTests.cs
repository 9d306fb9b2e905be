using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// Several trainer processes (one per GPU rank) attach to one sidecar; a preemption checkpoint
/// commits only when every rank has reported. The ranks here are SDK clients in the test process so
/// the test decides exactly when each reports; the sidecar is the real published binary.
/// </summary>
public sealed class MultiRankTests
{
    [Fact]
    public async Task Preemption_TwoRanksAttached_CommitWaitsForBoth()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var rank0 = await sidecar.ConnectAsync(rank: 0);
        await using var rank1 = await sidecar.ConnectAsync(rank: 1);

        sidecar.Process.Signal(Posix.SigTerm);
        var dump0 = await DumpRequestAsync(rank0);
        var dump1 = await DumpRequestAsync(rank1);
        Assert.Equal(dump0.CheckpointId, dump1.CheckpointId);
        Assert.Equal(CheckpointReason.Preemption, dump0.Reason);
        Assert.NotNull(dump0.Deadline);

        await rank0.CompleteDumpAsync(dump0, 40, TrainerFiles.Write(dump0, 0, ("model.bin", 3 << 20), ("optimizer.bin", 1 << 20)), null);
        var outcome = rank0.WaitForCheckpointAsync(dump0.CheckpointId);
        await sidecar.Process.WaitForLineAsync(@"from rank 0: 2 file\(s\), step 40; 1 of 2 rank\(s\) reported");
        Assert.False(outcome.IsCompleted, "the checkpoint must not commit before rank 1 has reported");
        Assert.Null(IndependentCheck.Latest(dirs.JobDirectory()));

        await rank1.CompleteDumpAsync(dump1, 40, TrainerFiles.Write(dump1, 1, ("model.bin", 3 << 20)), null);
        var result = await outcome;
        Assert.Equal(CheckpointStatus.Committed, result.Status);

        Assert.Equal(40, result.Step);
        var committed = IndependentCheck.StepDirectory(dirs.JobDirectory(), 40);
        Assert.Equal(IndependentCheck.StepName(40), IndependentCheck.Latest(dirs.JobDirectory()));
        IndependentCheck.AssertVerifies(committed);
        // Both ranks are this pod's: one shard, whose directory the outcome names.
        Assert.Equal(IndependentCheck.ShardDirectory(committed, 0), result.Directory);
        Assert.Equal(IndependentCheck.ShardDirectory(committed, 1), result.Directory);
        using var manifest = IndependentCheck.Manifest(committed);
        Assert.Single(manifest.RootElement.GetProperty("shards").EnumerateArray());
        Assert.Equal(2, manifest.RootElement.GetProperty("worldSize").GetInt32());
        Assert.Equal(["rank-0/model.bin", "rank-0/optimizer.bin", "rank-1/model.bin"], IndependentCheck.Files(manifest));
        Assert.Equal([0, 1], IndependentCheck.Ranks(manifest));

        // The trainers exit once they know; the sidecar lingers until they have.
        await rank0.DisposeAsync();
        await rank1.DisposeAsync();
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
    }

    [Fact]
    public async Task Report_StepDiffersFromOtherRank_IsRejectedAndNothingCommits()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var rank0 = await sidecar.ConnectAsync(rank: 0);
        await using var rank1 = await sidecar.ConnectAsync(rank: 1);

        sidecar.Process.Signal(Posix.SigTerm);
        var dump0 = await DumpRequestAsync(rank0);
        var dump1 = await DumpRequestAsync(rank1);
        await rank0.CompleteDumpAsync(dump0, 40, TrainerFiles.Write(dump0, 0, ("model.bin", 1 << 16)), null);

        var error = await Assert.ThrowsAsync<CheckpointException>(() =>
            rank1.CompleteDumpAsync(dump1, 41, TrainerFiles.Write(dump1, 1, ("model.bin", 1 << 16)), null));
        Assert.Equal(CheckpointErrorCode.InvalidArgument, error.StatusCode);
        Assert.Contains("step 41", error.Message, StringComparison.Ordinal);
        Assert.Null(IndependentCheck.Latest(dirs.JobDirectory()));
    }

    internal static async Task<DumpRequest> DumpRequestAsync(CheckpointClient client)
    {
        var requested = new TaskCompletionSource<DumpRequest>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = client.OnDumpRequested(dump => requested.TrySetResult(dump));
        if (client.PendingDump is { } pending)
        {
            return pending;
        }

        return await requested.Task.WaitAsync(ObservedProcess.DefaultTimeout);
    }
}
