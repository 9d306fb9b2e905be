using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// `checkpoint-sidecar prestop`, as a preStop hook execs it: starts the preemption flush, blocks
/// until it is committed, and any number of runs make one flush.
/// </summary>
public sealed class PreStopTests
{
    [Fact]
    public async Task PreStop_RunTwice_OneFlushBothBlockUntilCommitted()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();

        await using var first = StartPreStop(dirs);
        var waiting = await first.WaitForLineAsync(@"waiting for preemption checkpoint (\S+)");
        var dump = await MultiRankTests.DumpRequestAsync(client);
        Assert.Equal(waiting.Groups[1].Value, dump.CheckpointId);

        // At-least-once hooks: a second run joins the flush under way.
        await using var second = StartPreStop(dirs);
        await second.WaitForLineAsync($"waiting for preemption checkpoint {dump.CheckpointId}");
        Assert.False(first.HasExited, "prestop must block until the checkpoint is committed");

        await client.CompleteDumpAsync(dump, 9, TrainerFiles.Write(dump, 0, ("model.bin", 1 << 20)), null);
        Assert.Equal(0, await first.WaitForExitAsync());
        Assert.Equal(0, await second.WaitForExitAsync());
        await first.WaitForLineAsync($"checkpoint {dump.CheckpointId} Committed");

        var committed = Directory.GetDirectories(dirs.JobDirectory()).Select(Path.GetFileName).Where(n => n != "flush-records").ToList();
        Assert.Equal([IndependentCheck.StepName(9)], committed);
        IndependentCheck.AssertVerifies(IndependentCheck.StepDirectory(dirs.JobDirectory(), 9));
        Assert.False(sidecar.Process.HasExited, "the hook starts the flush; the sidecar keeps serving until its own SIGTERM");
        Assert.Contains(sidecar.Process.Lines, l => l.Contains("started (PreStopHook)", StringComparison.Ordinal));

        sidecar.Process.Signal(Posix.SigTerm);
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
    }

    [Fact]
    public async Task PreStop_NoSidecar_FailsFastNamingTheSocket()
    {
        using var dirs = new TestDirectories();
        await using var prestop = StartPreStop(dirs);

        Assert.Equal(1, await prestop.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains(dirs.SocketPath, prestop.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PreStop_NoTrainerAttached_ReturnsAtOnce()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var prestop = StartPreStop(dirs);

        Assert.Equal(0, await prestop.WaitForExitAsync());
        Assert.Contains("nothing to flush", prestop.Output, StringComparison.Ordinal);
    }

    private static ObservedProcess StartPreStop(TestDirectories dirs) =>
        ObservedProcess.Start("prestop", RepoPaths.SidecarBinary, ["prestop"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = dirs.SocketPath });
}
