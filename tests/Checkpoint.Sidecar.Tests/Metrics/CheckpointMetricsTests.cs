using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using Prometheus;

namespace Checkpoint.Sidecar.Tests.Metrics;

public sealed class CheckpointMetricsTests
{
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly CheckpointMetrics _metrics;

    public CheckpointMetricsTests() => _metrics = new CheckpointMetrics(_registry);

    [Fact]
    public async Task New_FailureSeries_ExistAtZero()
    {
        var samples = await MetricsText.CollectAsync(_registry);

        foreach (var cause in new[] { "deadline_exceeded", "verification_failed", "storage_error", "trainer_lost" })
        {
            Assert.Equal(0, samples.Value("checkpoint_flush_failures_total", ("cause", cause)));
        }

        Assert.Equal(0, samples.Value("checkpoint_verify_failures_total", ("stage", "flush")));
        Assert.Equal(0, samples.Value("checkpoint_verify_failures_total", ("stage", "resume")));
        Assert.Equal(0, samples.Value("checkpoint_verified_bytes_total", ("mode", "read-back")));
        Assert.Equal(0, samples.Value("checkpoint_verified_bytes_total", ("mode", "write-hash")));
    }

    [Theory]
    [InlineData(8_000_000L, 8_000_000, 0)]
    [InlineData(3_000_000L, 3_000_000, 5_000_000)]
    [InlineData(0L, 0, 8_000_000)]
    [InlineData(null, 0, 0)]
    public async Task RecordCommitted_ReadBackBytes_CountsVerifiedBytesByMode(long? readBackBytes, double readBack, double writeHash)
    {
        var timings = new FlushTimings(
            "20261129T024500123Z-preemption", CheckpointReason.Preemption,
            TimeSpan.Zero, TimeSpan.Zero, TimeSpan.FromSeconds(1), TimeSpan.Zero, TimeSpan.Zero, TimeSpan.FromSeconds(1),
            TimeSpan.FromSeconds(30), Bytes: 8_000_000, ReadBackBytes: readBackBytes);

        _metrics.RecordCommitted(timings, step: 1, committedAt: DateTimeOffset.UnixEpoch);

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(readBack, samples.Value("checkpoint_verified_bytes_total", ("mode", "read-back")));
        Assert.Equal(writeHash, samples.Value("checkpoint_verified_bytes_total", ("mode", "write-hash")));
    }

    [Fact]
    public async Task RecordCommitted_Timings_SetsPhaseGaugesAndBudgetRatio()
    {
        var timings = new FlushTimings(
            "20261129T024500123Z-preemption", CheckpointReason.Preemption,
            Notify: TimeSpan.FromSeconds(0.5), Dump: TimeSpan.FromSeconds(2), Copy: TimeSpan.FromSeconds(4),
            Verify: TimeSpan.FromSeconds(3), Commit: TimeSpan.FromSeconds(0.5), Total: TimeSpan.FromSeconds(10),
            Budget: TimeSpan.FromSeconds(40), Bytes: 8_000_000);

        _metrics.RecordCommitted(timings, step: 1234, committedAt: DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_500));

        var samples = await MetricsText.CollectAsync(_registry);
        var expected = new Dictionary<string, double>
        {
            ["notify"] = 0.5, ["dump"] = 2, ["copy"] = 4, ["verify"] = 3, ["commit"] = 0.5, ["total"] = 10,
        };
        foreach (var (phase, seconds) in expected)
        {
            Assert.Equal(seconds, samples.Value("checkpoint_last_flush_phase_seconds", ("phase", phase), ("reason", "preemption")));
            Assert.Equal(1, samples.Value("checkpoint_flush_phase_duration_seconds_count", ("phase", phase), ("reason", "preemption")));
            Assert.Equal(seconds, samples.Value("checkpoint_flush_phase_duration_seconds_sum", ("phase", phase), ("reason", "preemption")));
        }

        Assert.Equal(0.25, samples.Value("checkpoint_last_flush_budget_used_ratio"));
        Assert.Equal(2_000_000, samples.Value("checkpoint_flush_throughput_bytes_per_second"));
        Assert.Equal(8_000_000, samples.Value("checkpoint_flushed_bytes_total", ("reason", "preemption")));
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "preemption"), ("outcome", "committed")));
        Assert.Equal(1234, samples.Value("checkpoint_last_committed_step"));
        Assert.Equal(1_800_000_000.5, samples.Value("checkpoint_last_committed_timestamp_seconds"));
        Assert.Equal(0, samples.Value("checkpoint_deadline_misses_total"));
    }

    [Fact]
    public async Task RecordFailed_DeadlineExceeded_CountsFailureAndDeadlineMiss()
    {
        _metrics.RecordFailed(CheckpointReason.Preemption, FlushFailureCause.DeadlineExceeded);

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flush_failures_total", ("cause", "deadline_exceeded")));
        Assert.Equal(0, samples.Value("checkpoint_flush_failures_total", ("cause", "storage_error")));
        Assert.Equal(1, samples.Value("checkpoint_deadline_misses_total"));
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "preemption"), ("outcome", "failed")));
        Assert.Equal(0, samples.Value("checkpoint_verify_failures_total", ("stage", "flush")));
    }

    [Fact]
    public async Task RecordFailed_OtherCause_IsNoDeadlineMiss()
    {
        _metrics.RecordFailed(CheckpointReason.Periodic, FlushFailureCause.StorageError);
        _metrics.RecordFailed(CheckpointReason.Periodic, FlushFailureCause.VerificationFailed);

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flush_failures_total", ("cause", "storage_error")));
        Assert.Equal(1, samples.Value("checkpoint_flush_failures_total", ("cause", "verification_failed")));
        Assert.Equal(1, samples.Value("checkpoint_verify_failures_total", ("stage", "flush")));
        Assert.Equal(0, samples.Value("checkpoint_deadline_misses_total"));
        Assert.Equal(2, samples.Value("checkpoint_flushes_total", ("reason", "periodic"), ("outcome", "failed")));
    }

    [Fact]
    public async Task RecordSuperseded_Reason_CountsSupersededFlush()
    {
        _metrics.RecordSuperseded(CheckpointReason.Periodic);

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "periodic"), ("outcome", "superseded")));
    }

    [Fact]
    public async Task SetTrainersAttachedAndGracePeriod_Values_AreExported()
    {
        _metrics.SetTrainersAttached(3);
        _metrics.SetGracePeriod(TimeSpan.FromSeconds(45));

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(3, samples.Value("checkpoint_trainers_attached"));
        Assert.Equal(45, samples.Value("checkpoint_grace_period_seconds"));
    }
}
