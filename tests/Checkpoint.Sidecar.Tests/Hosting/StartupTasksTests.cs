using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Hosting;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Tests.Storage;
using Checkpoint.TestSupport;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Prometheus;

namespace Checkpoint.Sidecar.Tests.Hosting;

/// <summary>
/// Start-up housekeeping on the shared storage is best effort: whatever another pod, job or person
/// left there is logged and passed over, and the sidecar starts.
/// </summary>
public sealed class StartupTasksTests : IDisposable
{
    private static readonly TimeSpan NeverBlocks = TimeSpan.FromSeconds(30);

    private readonly TempDirectory _temp = new();
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly CheckpointLayout _layout;
    private readonly FlushRecordStore _records;
    private readonly StagingRoot _staging;
    private readonly StartupTasks _startup;

    public StartupTasksTests()
    {
        var options = Options.Create(new SidecarOptions
        {
            StagingDir = _temp.CreateDirectory("staging"),
            StorageDir = _temp.CreateDirectory("storage"),
            JobName = "job",
            PodNamespace = "ns",
        });
        _layout = new CheckpointLayout(options.Value.StorageDir, "ns", "job");
        _records = new FlushRecordStore(_layout, NullLogger<FlushRecordStore>.Instance);
        _staging = new StagingRoot(options.Value.StagingDir, NullLogger<StagingRoot>.Instance);
        _startup = new StartupTasks(
            new CheckpointStore(_layout, NullLogger<CheckpointStore>.Instance),
            _staging,
            _records,
            new CheckpointMetrics(_registry),
            options,
            new FlushPlanner(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2)),
            new SocketFile(options, NullLogger<SocketFile>.Instance),
            new ApplicationLifetime(NullLogger<ApplicationLifetime>.Instance),
            new NotListening(),
            NullLogger<StartupTasks>.Instance);
    }

    public void Dispose()
    {
        _staging.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public async Task StartAsync_HostileLeftoversAndFlushRecords_StartsAndRestoresTheLastPlausibleFlush()
    {
        _records.Write(FlushRecordStoreTests.Committed("genuine", new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero)));
        // Newer records: one whose copy took 1e13 s (no TimeSpan holds that), and a FIFO, which never has data.
        var absurd = FlushRecordStoreTests.Committed("absurd", new DateTimeOffset(2026, 1, 2, 3, 5, 5, TimeSpan.Zero));
        _records.Write(absurd with { Timings = absurd.Timings! with { CopySeconds = 1e13 } });
        Posix.MakeFifo(Path.Combine(_layout.FlushRecordsDirectory, "29991231T235959999Z-fifo.json"));
        var partial = Directory.CreateDirectory(_layout.PartialDirectory("20260101T000000000Z-periodic")).FullName;
        Posix.CreateFileWithRawName(partial, [0xff, 0xfe]);

        await _startup.StartAsync(CancellationToken.None).WaitAsync(NeverBlocks);

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(0.1, samples.Single(s => s.Name == "checkpoint_last_flush_budget_used_ratio").Value, 6);
        Assert.Equal(1.5, samples.Single(s => s.Name == "checkpoint_last_flush_phase_seconds" && s.Labels["phase"] == "copy").Value, 6);
        Assert.False(Directory.Exists(partial));
    }

    [Fact]
    public async Task StartAsync_FlushRecordsIsAFile_Starts()
    {
        Directory.CreateDirectory(_layout.JobDirectory);
        await File.WriteAllTextAsync(_layout.FlushRecordsDirectory, "not a directory");

        await _startup.StartAsync(CancellationToken.None).WaitAsync(NeverBlocks);

        Assert.DoesNotContain(await MetricsText.CollectAsync(_registry), s => s.Name == "checkpoint_last_flush_phase_seconds");
    }

    [Fact]
    public async Task StartAsync_PreviousPodMissedItsDeadline_RecommendsAGracePeriodTheFlushWouldHaveFitted()
    {
        var ended = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
        // A missed flush has no timings: it ran the 28 s the grace period left it, then gave up.
        _records.Write(FlushRecordStoreTests.Committed("missed", ended) with
        {
            Outcome = "failed",
            FailureCause = "deadline_exceeded",
            DeadlineMissed = true,
            TriggeredAt = ended.AddSeconds(-28),
            Timings = null,
        });

        await _startup.StartAsync(CancellationToken.None).WaitAsync(NeverBlocks);

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Single(s => s.Name == "checkpoint_last_flush_deadline_missed").Value);
        Assert.Equal(ended.ToUnixTimeSeconds(), samples.Single(s => s.Name == "checkpoint_last_flush_timestamp_seconds").Value);
        // At least 28 s of flush in at most 80 % of G, after the 2 s margin: ceil(28 / 0.8 + 2) = 37 s, more than the 30 s it had.
        Assert.Equal(37, samples.Single(s => s.Name == "checkpoint_recommended_grace_period_seconds").Value);
        Assert.Equal(28.0 / 30, samples.Single(s => s.Name == "checkpoint_predicted_flush_budget_ratio").Value, 6);
    }

    /// <summary>Start-up housekeeping runs before the server listens; nothing here starts one.</summary>
    private sealed class NotListening : IServer
    {
        public IFeatureCollection Features { get; } = new FeatureCollection();

        public Task StartAsync<TContext>(IHttpApplication<TContext> application, CancellationToken cancellationToken)
            where TContext : notnull => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose()
        {
        }
    }
}
