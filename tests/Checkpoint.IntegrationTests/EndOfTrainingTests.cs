using Checkpoint.IntegrationTests.Infrastructure;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// A native sidecar gets SIGTERM once the trainer container has exited: the end of training, which must not be logged
/// or counted as a preemption.
/// </summary>
public sealed class EndOfTrainingTests
{
    [Fact]
    public async Task SigtermAfterTrainerFinished_IsShutdownNotPreemption()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using (var trainer = ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "20", "--checkpoint-every", "10"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = sidecar.SocketPath }))
        {
            Assert.Equal(0, await trainer.WaitForExitAsync());
        }

        await sidecar.Process.WaitForLineAsync("detached");
        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Contains("checkpoint_trainer_attachments_total 1", metrics, StringComparison.Ordinal);

        sidecar.Process.Signal(Posix.SigTerm);

        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        await sidecar.Process.WaitForLineAsync("training has ended, shutting down");
        Assert.DoesNotContain(sidecar.Process.Lines, l => l.Contains("nothing to flush", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SigtermBeforeAnyTrainer_IsCountedAsPreemption()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        Assert.Contains("checkpoint_trainer_attachments_total 0", await sidecar.ScrapeMetricsAsync(), StringComparison.Ordinal);

        sidecar.Process.Signal(Posix.SigTerm);

        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        await sidecar.Process.WaitForLineAsync("no trainer is attached: nothing to flush");
    }
}
