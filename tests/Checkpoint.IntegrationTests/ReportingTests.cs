using System.Diagnostics;
using System.Globalization;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// What survives the pod: the flush record the next sidecar of the job re-exports, the push to a
/// real Prometheus Pushgateway, and the budget warnings raised before any preemption.
/// </summary>
public sealed class ReportingTests
{
    [Fact]
    public async Task FlushThatEndedThePod_IsReexportedByTheNextSidecar()
    {
        using var dirs = new TestDirectories();
        CheckpointOutcome outcome;
        await using (var sidecar = await SidecarProcess.StartAsync(dirs))
        await using (var client = await sidecar.ConnectAsync())
        {
            sidecar.Process.Signal(Posix.SigTerm);
            var dump = await MultiRankTests.DumpRequestAsync(client);
            var waiting = client.WaitForCheckpointAsync(dump.CheckpointId);
            await client.CompleteDumpAsync(dump, 5, TrainerFiles.Write(dump, 0, ("model.bin", 2 << 20)), null);
            outcome = await waiting;
            await client.DisposeAsync();
            Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        }

        var timings = Assert.IsType<CheckpointTimings>(outcome.Timings);
        await using var next = await SidecarProcess.StartAsync(dirs);
        var metrics = await next.ScrapeMetricsAsync();
        Assert.Equal(timings.Total.TotalSeconds / 30, MetricsExposition.Value(metrics, "checkpoint_last_flush_budget_used_ratio"), 6);
        Assert.Equal(timings.Copy.TotalSeconds,
            MetricsExposition.Value(metrics, "checkpoint_last_flush_phase_seconds{phase=\"copy\",reason=\"preemption\"}"), 6);
        Assert.Equal("0", MetricsExposition.Text(metrics, "checkpoint_last_flush_deadline_missed"));
        // The previous pod's throughput predicts this pod's flush before any preemption.
        Assert.InRange(MetricsExposition.Value(metrics, "checkpoint_predicted_flush_seconds"), 1e-6, 30);
        Assert.InRange(MetricsExposition.Value(metrics, "checkpoint_recommended_grace_period_seconds"), 1, 60);
    }

    [Fact]
    public async Task PreemptionFlush_FinalMetricsPushedToPushgateway()
    {
        using var dirs = new TestDirectories();
        var port = TestDirectories.FreeTcpPort();
        await using var pushgateway = ObservedProcess.Start("pushgateway", "/usr/bin/prometheus-pushgateway",
            [$"--web.listen-address=127.0.0.1:{port}", "--persistence.file="], new Dictionary<string, string>());
        await pushgateway.WaitForLineAsync("Listening on|listening on");
        await using var sidecar = await SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_PUSHGATEWAY_URL"] = $"http://127.0.0.1:{port}",
            ["POD_NAME"] = "train-0-xyz",
        });
        await using var client = await sidecar.ConnectAsync();

        sidecar.Process.Signal(Posix.SigTerm);
        var dump = await MultiRankTests.DumpRequestAsync(client);
        await client.CompleteDumpAsync(dump, 5, TrainerFiles.Write(dump, 0, ("model.bin", 1 << 20)), null);
        Assert.Equal(CheckpointStatus.Committed, (await client.WaitForCheckpointAsync(dump.CheckpointId)).Status);
        await client.DisposeAsync();
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        await sidecar.Process.WaitForLineAsync("Pushed the final metrics to");

        using var http = new HttpClient();
        var pushed = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
        Assert.Matches(
            "checkpoint_flushes_total\\{instance=\"\",job=\"checkpoint-sidecar\",job_name=\"it-job\",namespace=\"default\",outcome=\"committed\",pod=\"train-0-xyz\",reason=\"preemption\"\\} 1",
            pushed);
    }

    [Fact]
    public async Task ZeroGracePeriod_ReportedAtStart()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = "0",
        });

        await sidecar.Process.WaitForLineAsync("grace period of 0 s leaves no time for a flush");
        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Equal(double.PositiveInfinity, MetricsExposition.Value(metrics, "checkpoint_predicted_flush_budget_ratio"));
        Assert.Equal("0", MetricsExposition.Text(metrics, "checkpoint_grace_period_seconds"));
    }

    [Fact]
    public async Task PeriodicFlush_PredictionAgainstGraceIsExported()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var outcome = await TrainerFiles.CheckpointAsync(client, 5, 0, ("model.bin", 4 << 20));
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);

        var metrics = await sidecar.ScrapeMetricsAsync();
        var predicted = MetricsExposition.Value(metrics, "checkpoint_predicted_flush_seconds");
        Assert.InRange(predicted, 1e-6, 30);
        Assert.Equal(predicted / 30, MetricsExposition.Value(metrics, "checkpoint_predicted_flush_budget_ratio"), 6);
        Assert.Equal(
            Math.Ceiling(predicted / 0.8 + 1),
            MetricsExposition.Value(metrics, "checkpoint_recommended_grace_period_seconds"));
    }
}
