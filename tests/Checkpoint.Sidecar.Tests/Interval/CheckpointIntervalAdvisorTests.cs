using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Interval;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace Checkpoint.Sidecar.Tests.Interval;

/// <summary>The advisor reads the records every pod of the job wrote on the storage, adds this pod's own reports, and exports the result.</summary>
public sealed class CheckpointIntervalAdvisorTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new(Now);
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly FlushRecordStore _records;
    private readonly CheckpointIntervalAdvisor _advisor;

    public CheckpointIntervalAdvisorTests()
    {
        _records = new FlushRecordStore(new CheckpointLayout(_temp.CreateDirectory("storage"), "ns", "job"), NullLogger<FlushRecordStore>.Instance);
        var options = Options.Create(new SidecarOptions { PodName = "pod-0" });
        _advisor = new CheckpointIntervalAdvisor(
            _records, new CheckpointMetrics(_registry), options, _time, NullLogger<CheckpointIntervalAdvisor>.Instance);
    }

    public void Dispose()
    {
        _advisor.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public async Task Update_NotEnoughData_RecommendationAndMtbfAbsent()
    {
        _records.Write(CheckpointIntervalTests.Periodic("p1", "pod-1", Now.AddHours(-3), notify: 1, dump: 29));
        _records.Write(CheckpointIntervalTests.Preemption("pre1", "pod-1", Now.AddHours(-2)));

        _advisor.Update();

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(30, Single(samples, "checkpoint_periodic_cost_seconds"), 6);
        Assert.Equal(1, Single(samples, "checkpoint_observed_preemptions"));
        Assert.DoesNotContain(samples, s => s.Name is "checkpoint_observed_mtbf_seconds" or "checkpoint_recommended_interval_seconds" or "checkpoint_observed_periodic_interval_seconds");
    }

    [Fact]
    public async Task Update_OwnFlushReportedBeforeItsRecordIsOnStorage_CountsIt()
    {
        // Other pods' records: 12 h of the job, one preemption 8 h ago.
        _records.Write(CheckpointIntervalTests.Periodic("p1", "pod-1", Now.AddHours(-12), notify: 1, dump: 29));
        _records.Write(CheckpointIntervalTests.Periodic("p2", "pod-1", Now.AddHours(-11), notify: 1, dump: 29));
        _records.Write(CheckpointIntervalTests.Preemption("pre1", "pod-1", Now.AddHours(-8)));
        Assert.Null(_advisor.Update().Mtbf);
        Assert.Null(_advisor.Current);

        // This pod's preemption flush 4 h ago, told to the advisor but not (yet) on the storage.
        var at = Now.AddHours(-4);
        var outcome = new CheckpointOutcome("pre2", CheckpointStatus.Committed, "/x", 10, null, null,
            new FlushTimings("pre2", CheckpointReason.Preemption, TimeSpan.FromSeconds(0.1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5),
                TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(8.6), TimeSpan.FromSeconds(30), 1 << 20));
        await _advisor.FlushEndedAsync(new FlushReport(outcome, CheckpointReason.Preemption, "Signal", TimeSpan.FromSeconds(30), at, at.AddSeconds(9)), CancellationToken.None);

        var result = _advisor.Update();

        Assert.Equal(2, result.Preemptions);
        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(6 * 3600, Single(samples, "checkpoint_observed_mtbf_seconds"), 6);
        Assert.Equal(3600, Single(samples, "checkpoint_observed_periodic_interval_seconds"), 6);
        // sqrt(2 * 30 * 21600) = 1138.42 s.
        Assert.Equal(1138.42, Single(samples, "checkpoint_recommended_interval_seconds"), 2);
        // What trainers are told (Attached, CheckpointOutcome) is the exported value.
        Assert.Equal(1138.42, _advisor.Current!.Value.TotalSeconds, 2);

        // Every record removed from the storage and this pod's only one: the MTBF is no longer known, and disappears.
        Directory.Delete(Path.Combine(_temp.Path, "storage", "ns", "job", "flush-records"), recursive: true);
        _advisor.Update();
        samples = await MetricsText.CollectAsync(_registry);
        Assert.DoesNotContain(samples, s => s.Name is "checkpoint_observed_mtbf_seconds" or "checkpoint_recommended_interval_seconds");
        Assert.Null(_advisor.Current);
    }

    private static double Single(IReadOnlyList<MetricSample> samples, string name) => Assert.Single(samples, s => s.Name == name).Value;
}
