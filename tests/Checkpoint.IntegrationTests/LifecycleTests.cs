using System.Text.RegularExpressions;
using Checkpoint.IntegrationTests.Infrastructure;

namespace Checkpoint.IntegrationTests;

/// <summary>A regular sidecar in a batch Job: it must let the Job complete when training does.</summary>
public sealed class LifecycleTests
{
    [Fact]
    public async Task ExitWhenTrainersDone_TrainerFinishes_SidecarPersistsLastCheckpointAndExits0()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_EXIT_WHEN_TRAINERS_DONE"] = "true",
        });
        await using var trainer = ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "60", "--checkpoint-every", "20", "--payload-bytes", "4194304"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = sidecar.SocketPath });
        var last = await trainer.WaitForLineAsync(@"^checkpoint (\S+) written at step 60 ");
        Assert.Equal(0, await trainer.WaitForExitAsync());

        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        await sidecar.Process.WaitForLineAsync("Every trainer has detached and its checkpoints are persisted");
        await sidecar.Process.WaitForLineAsync($@"Checkpoint {Regex.Escape(last.Groups[1].Value)} \(periodic, step 60\) committed");
        Assert.Equal(IndependentCheck.StepName(60), IndependentCheck.Latest(dirs.JobDirectory()));
        IndependentCheck.AssertVerifies(IndependentCheck.StepDirectory(dirs.JobDirectory(), 60));
    }

    [Fact]
    public async Task ByDefault_TrainerFinishes_SidecarKeepsServing()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using (var trainer = ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "20", "--checkpoint-every", "0"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = sidecar.SocketPath }))
        {
            Assert.Equal(0, await trainer.WaitForExitAsync());
        }

        await sidecar.Process.WaitForLineAsync("detached");

        // Still serving: a second trainer process can attach and train.
        await using (var second = ObservedProcess.Start("sample-trainer-2", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "20", "--checkpoint-every", "0"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = sidecar.SocketPath }))
        {
            Assert.Equal(0, await second.WaitForExitAsync());
        }

        Assert.False(sidecar.Process.HasExited);
        Assert.DoesNotContain(sidecar.Process.Lines, l => l.Contains("Every trainer has detached", StringComparison.Ordinal));
    }
}
