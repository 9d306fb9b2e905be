using System.Globalization;
using System.Text.Json.Nodes;
using Checkpoint.Deploy.Tests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// The observability pieces against the real published sidecar: promtool accepts its exposition, every
/// metric the rules and dashboard name is one it exports, and a real Prometheus scrapes a flush,
/// evaluates the alert rules without error and answers every dashboard query.
/// </summary>
public sealed class LiveSidecarTests
{
    private static readonly Dictionary<string, string> PodMonitorLabels = new()
    {
        ["namespace"] = "ml",
        ["pod"] = "deploy-test-0",
        ["job_name"] = "deploy-test",
    };

    [Fact]
    public async Task PromtoolCheckMetrics_AcceptsTheExpositionAfterAFlush()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var outcome = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 3 << 20), ("optimizer.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);

        var exposition = await sidecar.ScrapeMetricsAsync();
        Assert.Contains("checkpoint_flush_phase_duration_seconds_bucket{", exposition, StringComparison.Ordinal);
        var result = await Tool.RunAsync("promtool", ["check", "metrics"], stdin: exposition);
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    [Fact]
    public async Task EveryMetricNamedByTheRulesAndTheDashboard_IsExportedByTheSidecar()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        var exported = MetricNames.Exported(await sidecar.ScrapeMetricsAsync());
        Assert.Contains("checkpoint_flushes_total", exported);
        Assert.Contains("checkpoint_flush_phase_duration_seconds_bucket", exported);

        var used = MetricNames.UsedByRules();
        used.UnionWith(MetricNames.UsedByDashboard());
        var missing = used.Where(n => !exported.Contains(n)).ToList();
        var pending = missing.Where(MetricNames.ExpectedFromIssue3.Contains).ToList();
        var unknown = missing.Except(pending).ToList();
        Assert.True(
            missing.Count == 0,
            (unknown.Count > 0 ? $"Named by the rules or dashboard but not exported by the sidecar: {string.Join(", ", unknown)}. " : "") +
            (pending.Count > 0 ? $"Expected from the sidecar change of issue 3 but not yet exported by {RepoPaths.SidecarBinary}: {string.Join(", ", pending)}." : ""));
    }

    [Fact]
    public async Task RealPrometheus_ScrapesTheFlush_EvaluatesTheRules_AndAnswersTheDashboardQueries()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var outcome = await TrainerFiles.CheckpointAsync(client, 42, 0, ("model.bin", 3 << 20), ("optimizer.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);

        await using var prometheus = await PrometheusServer.StartAsync(
            $"127.0.0.1:{sidecar.MetricsPort}", PodMonitorLabels, [DeployPaths.RulesFile]);

        // The flush counter, through the query API once the first scrape has landed.
        var series = await PrometheusServer.UntilAsync(
            async () =>
            {
                var answer = await prometheus.QueryAsync("checkpoint_flushes_total");
                var result = answer["data"]?["result"]?.AsArray();
                return (result is { Count: > 0 } ? result : null, answer.ToJsonString());
            },
            TimeSpan.FromSeconds(30),
            "checkpoint_flushes_total in Prometheus");
        var flush = Assert.Single(series)!;
        Assert.Equal("periodic", flush["metric"]!["reason"]!.GetValue<string>());
        Assert.Equal("committed", flush["metric"]!["outcome"]!.GetValue<string>());
        Assert.Equal("ml", flush["metric"]!["namespace"]!.GetValue<string>());
        Assert.Equal("1", flush["value"]![1]!.GetValue<string>());

        var step = await prometheus.QueryAsync("checkpoint_last_committed_step");
        Assert.Equal("42", step["data"]!["result"]![0]!["value"]![1]!.GetValue<string>());
        var ratio = await prometheus.QueryAsync("checkpoint_last_flush_budget_used_ratio");
        var ratioValue = double.Parse(ratio["data"]!["result"]![0]!["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture);
        Assert.Equal(outcome.Timings!.Total.TotalSeconds / 30, ratioValue, 6);

        // Every dashboard query is valid PromQL for Prometheus, with Grafana's variables filled in.
        foreach (var (panel, expr) in MetricNames.DashboardExpressions())
        {
            var promql = expr
                .Replace("$__rate_interval", "1m", StringComparison.Ordinal)
                .Replace("$namespace", ".*", StringComparison.Ordinal)
                .Replace("$job_name", ".*", StringComparison.Ordinal)
                .Replace("$pod", ".*", StringComparison.Ordinal)
                .Replace("$reason", "periodic", StringComparison.Ordinal);
            var answer = await prometheus.QueryAsync(promql);
            Assert.True(answer["status"]?.GetValue<string>() == "success", $"panel '{panel}': `{promql}` -> {answer.ToJsonString()}");
        }

        // The dashboard's key panels show this flush.
        var phases = await prometheus.QueryAsync("checkpoint_last_flush_phase_seconds{namespace=~\".*\", job_name=~\".*\", pod=~\".*\", reason=\"periodic\", phase!=\"total\"}");
        Assert.Equal(5, phases["data"]!["result"]!.AsArray().Count);
        var age = await prometheus.QueryAsync("time() - (checkpoint_last_committed_timestamp_seconds > 0)");
        var ageSeconds = double.Parse(age["data"]!["result"]![0]!["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture);
        Assert.InRange(ageSeconds, 0, 120);

        // Every alert rule is evaluated by the real server without error, and none fires for a healthy flush.
        var groups = await PrometheusServer.UntilAsync(
            async () =>
            {
                var answer = await prometheus.GetAsync("api/v1/rules");
                var rules = answer["data"]!["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()).ToList();
                var evaluated = rules.Count == MetricNames.RuleExpressions().Count() && rules.All(r => r!["lastEvaluation"]?.GetValue<string>() is { } t && !t.StartsWith("0001", StringComparison.Ordinal));
                return (evaluated ? rules : null, answer.ToJsonString());
            },
            TimeSpan.FromSeconds(30),
            "an evaluation of every alert rule");
        foreach (var rule in groups)
        {
            Assert.True(rule!["health"]!.GetValue<string>() == "ok", rule.ToJsonString());
            Assert.Equal("inactive", rule["state"]!.GetValue<string>());
        }
    }

    /// <summary>
    /// A pod whose preemption flush missed its deadline pushes its final metrics to a real Pushgateway; a real Prometheus
    /// scraping it (honor_labels, as deploy/README.md says) finds them under the labels the dashboard filters on, fires
    /// CheckpointDeadlineMissed for them, and not for the miss an earlier pod pushed two hours ago, which stays in the
    /// Pushgateway for ever. The dying pod recommends a grace period its flush would have fitted, not 0 s.
    /// </summary>
    [Fact]
    public async Task DeadlineMissPushedToPushgateway_AlertsUnderTheDashboardsLabels_AndAnOldPushDoesNot()
    {
        using var dirs = new TestDirectories();
        var port = TestDirectories.FreeTcpPort();
        await using var pushgateway = ObservedProcess.Start("pushgateway", Tool.Find("prometheus-pushgateway"),
            [$"--web.listen-address=127.0.0.1:{port}", "--persistence.file="], new Dictionary<string, string>());
        await pushgateway.WaitForLineAsync("Listening on|listening on");
        var gateway = $"http://127.0.0.1:{port}";

        await using (var sidecar = await SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_PUSHGATEWAY_URL"] = gateway,
            ["POD_NAME"] = "deploy-test-0",
            ["POD_NAMESPACE"] = "ml",
            ["CHECKPOINT_JOB_NAME"] = "deploy-test",
            ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = "2",
        }))
        {
            // The trainer never dumps: the flush runs out of the 1 s the grace period leaves it.
            await using var client = await sidecar.ConnectAsync();
            sidecar.Process.Signal(Posix.SigTerm);
            await sidecar.Process.WaitForLineAsync("Pushed the final metrics to");
            await client.DisposeAsync();
            Assert.Equal(1, await sidecar.Process.WaitForExitAsync());
        }

        // An earlier pod's miss, pushed two hours ago, with the sidecar's own help texts (the Pushgateway refuses a push
        // that disagrees with what it holds).
        using (var http = new HttpClient())
        {
            var held = (await http.GetStringAsync(new Uri($"{gateway}/metrics"))).Split('\n');
            string Help(string name) => held.Single(l => l.StartsWith($"# HELP {name} ", StringComparison.Ordinal));
            var twoHoursAgo = DateTimeOffset.UtcNow.AddHours(-2).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
            using var old = new StringContent(
                $"{Help("checkpoint_last_flush_deadline_missed")}\n# TYPE checkpoint_last_flush_deadline_missed gauge\ncheckpoint_last_flush_deadline_missed 1\n" +
                $"{Help("checkpoint_last_flush_timestamp_seconds")}\n# TYPE checkpoint_last_flush_timestamp_seconds gauge\ncheckpoint_last_flush_timestamp_seconds {twoHoursAgo}\n");
            var put = await http.PutAsync(new Uri($"{gateway}/metrics/job/checkpoint-sidecar/namespace/ml/job_name/deploy-test/pod/deploy-test-old"), old);
            Assert.True(put.IsSuccessStatusCode, $"{put} {await put.Content.ReadAsStringAsync()}");
        }

        await using var prometheus = await PrometheusServer.StartAsync(
            [($"127.0.0.1:{port}", new Dictionary<string, string>())], [DeployPaths.RulesFile], honorLabels: true);
        var firing = await PrometheusServer.UntilAsync(
            async () =>
            {
                var answer = await prometheus.QueryAsync("ALERTS{alertname=\"CheckpointDeadlineMissed\", alertstate=\"firing\"}");
                var result = answer["data"]?["result"]?.AsArray();
                return (result is { Count: > 0 } ? result : null, answer.ToJsonString());
            },
            TimeSpan.FromSeconds(30),
            "CheckpointDeadlineMissed firing");
        var alert = Assert.Single(firing)!["metric"]!;
        Assert.Equal("deploy-test-0", alert["pod"]!.GetValue<string>());
        Assert.Equal("deploy-test", alert["job_name"]!.GetValue<string>());
        Assert.Equal("ml", alert["namespace"]!.GetValue<string>());

        // The dashboard's filters (namespace, job_name, pod) find the pushed series.
        var missed = await prometheus.QueryAsync(
            "checkpoint_last_flush_deadline_missed{namespace=~\"ml\", job_name=~\"deploy-test\", pod=~\"deploy-test-0\"} == 1");
        Assert.Single(missed["data"]!["result"]!.AsArray());
        var recommended = await prometheus.QueryAsync(
            "checkpoint_recommended_grace_period_seconds{namespace=~\"ml\", job_name=~\"deploy-test\", pod=~\"deploy-test-0\"}");
        var seconds = double.Parse(recommended["data"]!["result"]![0]!["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture);
        Assert.True(seconds > 2, $"after missing its deadline with G = 2 s the pod recommends {seconds} s");
    }
}
