using System.Text.RegularExpressions;
using Checkpoint.TrainerSdk;
using Checkpoint.IntegrationTests.Infrastructure;

namespace Checkpoint.IntegrationTests;

/// <summary>The sidecar container restarts under a running trainer (crash and kubelet restart, or upgrade).</summary>
public sealed class SdkReattachTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SidecarRestarts_ClientReattachesWithNewTrainerId_AndPeriodicCheckpointCommits()
    {
        using var dirs = new TestDirectories();
        using var log = new StringWriter();
        CheckpointClient client;
        string oldTrainerId;
        await using (var first = await SidecarProcess.StartAsync(dirs))
        {
            client = await CheckpointClient.ConnectAsync(new CheckpointClientOptions
            {
                SocketPath = dirs.SocketPath,
                Rank = 0,
                Description = "integration test rank 0",
                HandleTermination = false,
                Log = TextWriter.Synchronized(log),
            });
            oldTrainerId = client.TrainerId;
            Assert.True(client.IsAttached);
            Assert.Equal(CheckpointStatus.Committed, (await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 4096))).Status);

            first.Process.Signal(Posix.SigKill);
            Assert.Equal(128 + Posix.SigKill, await first.Process.WaitForExitAsync());
        }

        await using (client)
        {
            await client.WaitForDetachmentAsync().WaitAsync(Bound);
            Assert.False(client.IsAttached);
            var detached = await Assert.ThrowsAsync<CheckpointException>(() => client.BeginCheckpointAsync(20));
            Assert.Equal(CheckpointErrorCode.Unavailable, detached.StatusCode);
            Assert.Contains("reattaching", detached.Message, StringComparison.Ordinal);

            // Same directories, so the same socket path: the new sidecar replaces the stale socket file.
            await using var restarted = await SidecarProcess.StartAsync(dirs);
            var attachedLine = await restarted.Process.WaitForLineAsync(@"Trainer (\S+) \(rank 0, integration test rank 0\) attached");

            // The sidecar logs the attachment before confirming it; the client is detached until the confirmation arrives.
            await client.WaitForAttachmentAsync().WaitAsync(Bound);
            Assert.True(client.IsAttached);
            Assert.Equal(attachedLine.Groups[1].Value, client.TrainerId);
            Assert.NotEqual(oldTrainerId, client.TrainerId);
            Assert.False(client.DumpRequested);

            var outcome = await TrainerFiles.CheckpointAsync(client, 20, 0, ("model.bin", 4096));
            Assert.Equal(CheckpointStatus.Committed, outcome.Status);
            Assert.Equal(20, outcome.Step);
            Assert.Equal(IndependentCheck.StepName(20), IndependentCheck.Latest(dirs.JobDirectory()));
            Assert.Equal(IndependentCheck.ShardDirectory(IndependentCheck.StepDirectory(dirs.JobDirectory(), 20), 0), outcome.Directory);

            // One line for the detach and one for the reattachment, however many attempts it took.
            string[] lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines, line => line.Contains("detached from the checkpoint sidecar", StringComparison.Ordinal));
            Assert.Single(lines, line => line.Contains($"reattached to the checkpoint sidecar as trainer {client.TrainerId}", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task ReattachOff_SidecarRestarts_ClientStaysDetached()
    {
        using var dirs = new TestDirectories();
        var first = await SidecarProcess.StartAsync(dirs);
        await using var client = await CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = dirs.SocketPath,
            Rank = 0,
            Description = "integration test rank 0",
            HandleTermination = false,
            Reattach = false,
        });
        string oldTrainerId = client.TrainerId;

        first.Process.Signal(Posix.SigKill);
        Assert.Equal(128 + Posix.SigKill, await first.Process.WaitForExitAsync());
        await first.DisposeAsync();
        await client.WaitForDetachmentAsync().WaitAsync(Bound);

        await using var restarted = await SidecarProcess.StartAsync(dirs);

        // The restarted sidecar answers calls that need no attachment, but the client does not attach to it and says so
        // instead of sending its dead trainer id.
        Assert.Empty((await client.GetStatusAsync()).Trainers);
        var refused = await Assert.ThrowsAsync<CheckpointException>(() => TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 16)));
        Assert.Equal(CheckpointErrorCode.Unavailable, refused.StatusCode);
        Assert.Contains(nameof(CheckpointClientOptions.Reattach), refused.Message, StringComparison.Ordinal);
        Assert.False(client.IsAttached);
        Assert.Equal(oldTrainerId, client.TrainerId);
        Assert.Empty((await client.GetStatusAsync()).Trainers);
    }

    [Fact]
    public async Task SigtermWhileSidecarIsDown_SidecarComesBack_TrainerReattachesAndPreemptionCheckpointCommits()
    {
        using var dirs = new TestDirectories();
        await using (var first = await SidecarProcess.StartAsync(dirs))
        await using (var trainer = ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "100000", "--step-delay-ms", "10", "--checkpoint-every", "0"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = dirs.SocketPath }))
        {
            await trainer.WaitForLineAsync("^step 20 ");
            first.Process.Signal(Posix.SigKill);
            Assert.Equal(128 + Posix.SigKill, await first.Process.WaitForExitAsync());
            await trainer.WaitForLineAsync("detached from the checkpoint sidecar");

            // SIGTERM reaches the trainer while no sidecar runs; the SDK waits up to 5 s for the restarted one (it is ready
            // in well under a second), then tells it, so the sidecar asks for the preemption dump.
            trainer.Signal(Posix.SigTerm);
            await trainer.WaitForLineAsync("SIGTERM while detached");
            await using var restarted = await SidecarProcess.StartAsync(dirs);

            var written = await trainer.WaitForLineAsync(@"^checkpoint (\S+) written at step (\d+) \(preemption\)");
            Assert.Equal(1, await trainer.WaitForExitAsync());
            await restarted.Process.WaitForLineAsync($"Checkpoint {Regex.Escape(written.Groups[1].Value)} \\(preemption, step {written.Groups[2].Value}\\) committed");
            var step = long.Parse(written.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(IndependentCheck.StepName(step), IndependentCheck.Latest(dirs.JobDirectory()));
            IndependentCheck.AssertVerifies(IndependentCheck.StepDirectory(dirs.JobDirectory(), step));
        }
    }
}
