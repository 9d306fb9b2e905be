using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// The whole loop with real processes: the published sidecar and the sample trainer, a real SIGTERM
/// to both (as the kubelet sends it), the checkpoint checked with xxhsum, and a resumed run that ends
/// bit-identical to one that was never interrupted.
/// </summary>
public sealed class PreemptionTests
{
    private const int TotalSteps = 300;

    [Fact]
    public async Task Sigterm_MidTraining_CommitsVerifiedCheckpointAndResumeIsBitExact()
    {
        var uninterrupted = await TrainUninterruptedAsync();

        using var dirs = new TestDirectories();
        string checkpointId;
        long dumpedStep;
        await using (var sidecar = await SidecarProcess.StartAsync(dirs))
        await using (var trainer = StartTrainer(sidecar, "--step-delay-ms", "20", "--checkpoint-every", "100"))
        {
            await trainer.WaitForLineAsync("^step 50 ");
            sidecar.Process.Signal(Posix.SigTerm);
            trainer.Signal(Posix.SigTerm);

            var written = await trainer.WaitForLineAsync(@"^checkpoint (\S+) written at step (\d+) \(preemption\)");
            checkpointId = written.Groups[1].Value;
            dumpedStep = long.Parse(written.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(1, await trainer.WaitForExitAsync());
            Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
            await sidecar.Process.WaitForLineAsync($"Checkpoint {checkpointId} \\(preemption, step {dumpedStep}\\) committed");
        }

        Assert.InRange(dumpedStep, 50, TotalSteps - 1);
        var job = dirs.JobDirectory();
        var stepName = IndependentCheck.StepName(dumpedStep);
        Assert.Equal(stepName, IndependentCheck.Latest(job));
        var committed = IndependentCheck.StepDirectory(job, dumpedStep);
        IndependentCheck.AssertVerifies(committed);
        using (var manifest = IndependentCheck.Manifest(committed))
        {
            Assert.Equal("preemption", manifest.RootElement.GetProperty("reason").GetString());
            Assert.Equal(dumpedStep, manifest.RootElement.GetProperty("step").GetInt64());
        }

        Assert.Empty(IndependentCheck.UncommittedSteps(job));

        await using (var sidecar = await SidecarProcess.StartAsync(dirs))
        await using (var trainer = StartTrainer(sidecar))
        {
            await trainer.WaitForLineAsync($"^resumed from checkpoint {stepName} at step {dumpedStep}$");
            var finished = await trainer.WaitForLineAsync($@"^finished at step {TotalSteps} params-sha256 (\w+)");
            Assert.Equal(uninterrupted, finished.Groups[1].Value);
            Assert.Equal(0, await trainer.WaitForExitAsync());
        }
    }

    [Fact]
    public async Task Sigterm_TrainerAsksForTheOutcomeAfterTheCommit_StillLearnsIt()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        sidecar.Process.Signal(Posix.SigTerm);
        var dump = await MultiRankTests.DumpRequestAsync(client);
        await client.CompleteDumpAsync(dump, 7, TrainerFiles.Write(dump, 0, ("model.bin", 1 << 20)), null);
        await sidecar.Process.WaitForLineAsync($"Checkpoint {dump.CheckpointId} .* committed");

        // The flush is over, but a trainer still attached gets to learn how it ended: the sidecar
        // must not begin to stop while it is attached (it lingers for it until the deadline).
        var outcome = await client.WaitForCheckpointAsync(dump.CheckpointId);
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        Assert.DoesNotContain(sidecar.Process.Lines, l => l.Contains("Stopping after the preemption flush", StringComparison.Ordinal));

        await client.DisposeAsync();
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        await sidecar.Process.WaitForLineAsync("Stopping after the preemption flush: Committed");
    }

    private static async Task<string> TrainUninterruptedAsync()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var trainer = StartTrainer(sidecar, "--checkpoint-every", "0");
        await trainer.WaitForLineAsync("^starting fresh");
        var finished = await trainer.WaitForLineAsync($@"^finished at step {TotalSteps} params-sha256 (\w+)");
        Assert.Equal(0, await trainer.WaitForExitAsync());
        return finished.Groups[1].Value;
    }

    private static ObservedProcess StartTrainer(SidecarProcess sidecar, params string[] arguments) =>
        ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", TotalSteps.ToString(System.Globalization.CultureInfo.InvariantCulture), .. arguments],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = sidecar.SocketPath });
}
