using System.Net.Sockets;
using System.Text.RegularExpressions;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// A regular (not native) sidecar container starts beside the trainer, not before it: the trainer waits for the socket,
/// and a sidecar no trainer ever attaches to gives up and fails the pod instead of keeping it for ever.
/// </summary>
public sealed class StartupRaceTests
{
    private const string WaitingLine = @"waiting up to (\S+) s for the checkpoint sidecar socket";

    [Fact]
    public async Task TrainerStartedBeforeSidecar_AttachesOnceSocketAppears_CheckpointsAndBothExit0()
    {
        using var dirs = new TestDirectories();
        await using var trainer = ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "40", "--checkpoint-every", "20"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = dirs.SocketPath, ["CHECKPOINT_CONNECT_TIMEOUT_SECONDS"] = "120" });
        var waiting = await trainer.WaitForLineAsync(WaitingLine);
        Assert.Equal("120", waiting.Groups[1].Value);

        await using var sidecar = await SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_EXIT_WHEN_TRAINERS_DONE"] = "true",
        });

        await sidecar.Process.WaitForLineAsync(@"Trainer \S+ \(rank 0, .*\) attached");
        await trainer.WaitForLineAsync(@"^checkpoint \S+ written at step 40 ");
        Assert.Equal(0, await trainer.WaitForExitAsync());
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        Assert.Equal(IndependentCheck.StepName(40), IndependentCheck.Latest(dirs.JobDirectory()));
    }

    [Fact]
    public async Task StaleSocketFileOfKilledSidecar_ClientWaitsForTheNextSidecar()
    {
        using var dirs = new TestDirectories();
        await using (var killed = await SidecarProcess.StartAsync(dirs))
        {
            killed.Process.Signal(Posix.SigKill);
            await killed.Process.WaitForExitAsync();
        }

        Assert.True(File.Exists(dirs.SocketPath), "a SIGKILLed sidecar leaves its socket file");
        var log = new LineSignal(WaitingLine);
        var connecting = CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = dirs.SocketPath,
            Description = "integration test rank 0",
            HandleTermination = false,
            SocketWaitTimeout = TimeSpan.FromSeconds(120),
            Log = log,
        });
        await log.Seen.WaitAsync(ObservedProcess.DefaultTimeout);
        Assert.False(connecting.IsCompleted, "a socket file nobody listens on must be waited on");

        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await connecting.WaitAsync(ObservedProcess.DefaultTimeout);
        Assert.True(client.IsAttached);
        Assert.Equal(CheckpointStatus.Committed, (await TrainerFiles.CheckpointAsync(client, 5, 0, ("model.bin", 4096))).Status);
    }

    [Fact]
    public async Task NoSocketWithinTimeout_FailsNamingPathAndSetting()
    {
        using var dirs = new TestDirectories();
        var started = DateTimeOffset.UtcNow;

        var e = await Assert.ThrowsAsync<CheckpointException>(() => CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = dirs.SocketPath,
            HandleTermination = false,
            SocketWaitTimeout = TimeSpan.FromMilliseconds(300),
            Log = TextWriter.Null,
        }));

        Assert.True(DateTimeOffset.UtcNow - started >= TimeSpan.FromMilliseconds(300));
        Assert.Equal(CheckpointErrorCode.Unavailable, e.StatusCode);
        Assert.Contains($"no checkpoint sidecar socket at {dirs.SocketPath}", e.Message, StringComparison.Ordinal);
        Assert.Contains("waited 0.3 s", e.Message, StringComparison.Ordinal);
        Assert.Contains("CHECKPOINT_CONNECT_TIMEOUT_SECONDS", e.Message, StringComparison.Ordinal);
        Assert.IsType<SocketException>(e.InnerException);
    }

    [Fact]
    public async Task SocketWaitTimeoutZero_FailsAtOnceWithoutWaiting()
    {
        using var dirs = new TestDirectories();
        var log = new LineSignal(WaitingLine);

        var e = await Assert.ThrowsAsync<CheckpointException>(() => CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = dirs.SocketPath,
            HandleTermination = false,
            SocketWaitTimeout = TimeSpan.Zero,
            Log = log,
        }));

        Assert.Contains("waited 0 s", e.Message, StringComparison.Ordinal);
        Assert.False(log.Seen.IsCompleted);
    }

    [Fact]
    public void SocketWaitTimeout_FromEnvironment_AndMalformedRefused()
    {
        Assert.Equal(TimeSpan.FromSeconds(60), new CheckpointClientOptions(_ => null).SocketWaitTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2.5), new CheckpointClientOptions(Environment("2.5")).SocketWaitTimeout);
        Assert.Equal(TimeSpan.Zero, new CheckpointClientOptions(Environment("0")).SocketWaitTimeout);
        foreach (var bad in new[] { "soon", "-1", "Infinity", "NaN" })
        {
            var e = Assert.Throws<CheckpointException>(() => new CheckpointClientOptions(Environment(bad)));
            Assert.Contains("CHECKPOINT_CONNECT_TIMEOUT_SECONDS", e.Message, StringComparison.Ordinal);
        }

        static Func<string, string?> Environment(string value) =>
            name => name == CheckpointClientOptions.SocketWaitTimeoutEnvironmentVariable ? value : null;
    }

    [Fact]
    public async Task SidecarWithoutTrainer_GivesUpAfterFirstTrainerTimeout_Exit3NamingWhatToCheck()
    {
        using var dirs = new TestDirectories();
        var environment = SidecarProcess.Environment(dirs);
        environment["CHECKPOINT_EXIT_WHEN_TRAINERS_DONE"] = "true";
        environment["CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS"] = "1";
        // Not SidecarProcess.StartAsync, which waits for the ready line: the second counts from start,
        // and on a loaded machine it may run out before the server is ready.
        await using var sidecar = ObservedProcess.Start("sidecar", RepoPaths.SidecarBinary, [], environment);

        Assert.Equal(3, await sidecar.WaitForExitAsync());
        var line = await sidecar.WaitForLineAsync("No trainer attached within 1 s of start.*");
        Assert.Contains("CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS", line.Value, StringComparison.Ordinal);
        Assert.Contains(dirs.SocketPath, line.Value, StringComparison.Ordinal);
    }

    /// <summary>The SDK's log, completing <see cref="Seen"/> when a line matches.</summary>
    private sealed class LineSignal(string pattern) : TextWriter
    {
        private readonly TaskCompletionSource _seen = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Seen => _seen.Task;

        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;

        public override void WriteLine(string? value)
        {
            if (value is not null && Regex.IsMatch(value, pattern))
            {
                _seen.TrySetResult();
            }
        }
    }
}
