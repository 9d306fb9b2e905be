using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Hosting;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace Checkpoint.Sidecar.Tests.Hosting;

/// <summary>
/// A regular sidecar whose trainer never attaches gives up after CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS
/// instead of keeping the pod for ever; one whose trainer did attach is not cut short by it.
/// </summary>
// Environment.ExitCode is the process's: these tests must not run beside each other.
[Collection(nameof(TrainersDoneWatcherTests))]
public sealed class TrainersDoneWatcherTests : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(600);

    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 9, 0, 0, TimeSpan.Zero));
    private readonly ApplicationLifetime _lifetime = new(NullLogger<ApplicationLifetime>.Instance);
    private readonly SidecarOptions _settings;
    private readonly StagingRoot _stagingRoot;
    private readonly FlushCoordinator _coordinator;

    public TrainersDoneWatcherTests()
    {
        _settings = new SidecarOptions
        {
            StagingDir = _temp.CreateDirectory("staging"),
            StorageDir = _temp.CreateDirectory("storage"),
            SocketPath = _temp.Combine("sidecar.sock"),
            JobName = "job",
            PodNamespace = "ns",
            KubernetesEnabled = false,
            ExitWhenTrainersDone = true,
        };
        var options = Options.Create(_settings);
        var planner = new FlushPlanner(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2));
        var store = new CheckpointStore(new CheckpointLayout(_settings.StorageDir, "ns", "job"), NullLogger<CheckpointStore>.Instance);
        var target = new SharedDirectoryTarget(
            store.Layout, new CheckpointCopier(1, _settings.CopyBufferBytes, _time), "pod-a", NullLogger<SharedDirectoryTarget>.Instance);
        _stagingRoot = new StagingRoot(_settings.StagingDir, NullLogger<StagingRoot>.Instance);
        _coordinator = new FlushCoordinator(
            planner, new FlushPipeline(target, options, planner, _time, NullLogger<FlushPipeline>.Instance), store, _stagingRoot,
            new CheckpointMetrics(Prometheus.Metrics.NewCustomRegistry()), [], _time, NullLogger<FlushCoordinator>.Instance);
    }

    public Task InitializeAsync() => _coordinator.StartAsync(CancellationToken.None);

    public Task DisposeAsync() => _coordinator.StopAsync(CancellationToken.None).WaitAsync(Bound);

    public void Dispose()
    {
        Environment.ExitCode = 0;
        _coordinator.Dispose();
        _stagingRoot.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public async Task FirstTrainer_NoneWithinTimeout_StopsWithExitCode3()
    {
        using var watcher = await StartWatcherAsync();

        _time.Advance(Timeout - TimeSpan.FromSeconds(1));
        Assert.False(_lifetime.ApplicationStopping.IsCancellationRequested);
        _time.Advance(TimeSpan.FromSeconds(1));

        await watcher.ExecuteTask!.WaitAsync(Bound);
        Assert.True(_lifetime.ApplicationStopping.IsCancellationRequested);
        Assert.Equal(TrainersDoneWatcher.NoTrainerExitCode, Environment.ExitCode);
    }

    [Fact]
    public async Task FirstTrainer_AttachedInTime_IsNotCutShortAndExitsWhenDone()
    {
        using var watcher = await StartWatcherAsync();

        var trainer = _coordinator.Attach(0, "trainer");
        _time.Advance(Timeout * 2);
        Assert.False(_lifetime.ApplicationStopping.IsCancellationRequested);

        _coordinator.Detach(trainer.Id);
        await watcher.ExecuteTask!.WaitAsync(Bound);
        Assert.True(_lifetime.ApplicationStopping.IsCancellationRequested);
        Assert.Equal(0, Environment.ExitCode);
    }

    [Fact]
    public async Task FirstTrainer_TimeoutZero_WaitsForEver()
    {
        _settings.FirstTrainerTimeoutSeconds = 0;
        using var watcher = await StartWatcherAsync();

        _time.Advance(TimeSpan.FromDays(30));

        Assert.False(watcher.ExecuteTask!.IsCompleted);
        Assert.False(_lifetime.ApplicationStopping.IsCancellationRequested);
    }

    [Fact]
    public async Task FirstTrainer_TimeoutWithoutExitWhenDone_StillGivesUp()
    {
        _settings.ExitWhenTrainersDone = false;
        _settings.FirstTrainerTimeoutSeconds = 5;
        using var watcher = await StartWatcherAsync();

        _time.Advance(TimeSpan.FromSeconds(5));

        await watcher.ExecuteTask!.WaitAsync(Bound);
        Assert.Equal(TrainersDoneWatcher.NoTrainerExitCode, Environment.ExitCode);
    }

    [Fact]
    public async Task FirstTrainer_TerminatingWhenTimeoutPasses_LeavesExitToTermination()
    {
        using var watcher = await StartWatcherAsync();
        _coordinator.Terminate(TerminationSource.Signal);

        _time.Advance(Timeout);

        await watcher.ExecuteTask!.WaitAsync(Bound);
        Assert.False(_lifetime.ApplicationStopping.IsCancellationRequested);
        Assert.Equal(0, Environment.ExitCode);
    }

    private async Task<TrainersDoneWatcher> StartWatcherAsync()
    {
        var watcher = new TrainersDoneWatcher(
            Options.Create(_settings), _coordinator, _lifetime, _time, NullLogger<TrainersDoneWatcher>.Instance);
        await watcher.StartAsync(CancellationToken.None);
        return watcher;
    }
}
