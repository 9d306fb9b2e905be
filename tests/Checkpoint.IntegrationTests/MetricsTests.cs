using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>/metrics, scraped over HTTP from the real sidecar after a flush.</summary>
public sealed class MetricsTests
{
    [Fact]
    public async Task AfterFlush_MetricsShowItWithBudgetRatioTotalOverGrace()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var outcome = await TrainerFiles.CheckpointAsync(client, 77, 0, ("model.bin", 2 << 20), ("optimizer.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        var timings = Assert.IsType<CheckpointTimings>(outcome.Timings);

        var metrics = await sidecar.ScrapeMetricsAsync();
        var grace = MetricsExposition.Value(metrics, "checkpoint_grace_period_seconds");
        Assert.Equal(30, grace);
        Assert.Equal(timings.Total.TotalSeconds / grace, MetricsExposition.Value(metrics, "checkpoint_last_flush_budget_used_ratio"), 6);
        Assert.Equal(1, MetricsExposition.Value(metrics, "checkpoint_flushes_total{reason=\"periodic\",outcome=\"committed\"}"));
        Assert.Equal(77, MetricsExposition.Value(metrics, "checkpoint_last_committed_step"));
        Assert.Equal(3 << 20, MetricsExposition.Value(metrics, "checkpoint_flushed_bytes_total{reason=\"periodic\"}"));
        Assert.Equal(1, MetricsExposition.Value(metrics, "checkpoint_trainers_attached"));
        Assert.Equal(timings.Copy.TotalSeconds, MetricsExposition.Value(metrics, "checkpoint_last_flush_phase_seconds{phase=\"copy\",reason=\"periodic\"}"), 6);
        Assert.Equal(1, MetricsExposition.Value(metrics, "checkpoint_flush_phase_duration_seconds_count{phase=\"total\",reason=\"periodic\"}"));
    }

    [Fact]
    public async Task HealthAndReadiness_AnswerOverHttp()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        using var http = new HttpClient();
        Assert.Equal("ready\n", await http.GetStringAsync(new Uri($"http://127.0.0.1:{sidecar.MetricsPort}/readyz")));
        Assert.Equal("ok\n", await http.GetStringAsync(new Uri($"http://127.0.0.1:{sidecar.MetricsPort}/healthz")));
    }
}
