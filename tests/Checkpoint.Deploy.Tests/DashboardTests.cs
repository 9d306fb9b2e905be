using System.Text.Json.Nodes;
using Checkpoint.Deploy.Tests.Infrastructure;

namespace Checkpoint.Deploy.Tests;

/// <summary>The Grafana dashboard JSON: well formed, on the datasource variable, with the panels operators need.</summary>
public sealed class DashboardTests
{
    private static readonly JsonNode Dashboard = MetricNames.Dashboard();

    private static IEnumerable<JsonNode> Panels => Dashboard["panels"]!.AsArray().Select(p => p!).Where(p => p["type"]!.GetValue<string>() != "row");

    [Fact]
    public void Panels_HaveUniqueIdsFitTheGridAndQueryThroughTheDatasourceVariable()
    {
        var all = Dashboard["panels"]!.AsArray().Select(p => p!).ToList();
        Assert.Equal(all.Count, all.Select(p => p["id"]!.GetValue<int>()).Distinct().Count());
        Assert.Equal("checkpoint-sidecar", Dashboard["uid"]!.GetValue<string>());
        var variables = Dashboard["templating"]!["list"]!.AsArray().Select(v => v!["name"]!.GetValue<string>()).ToList();
        Assert.Equal(["datasource", "namespace", "job_name", "pod", "reason"], variables);
        foreach (var panel in Panels)
        {
            var grid = panel["gridPos"]!;
            Assert.InRange(grid["x"]!.GetValue<int>() + grid["w"]!.GetValue<int>(), 1, 24);
            Assert.Equal("${datasource}", panel["datasource"]!["uid"]!.GetValue<string>());
            var targets = panel["targets"]!.AsArray();
            Assert.NotEmpty(targets);
            Assert.All(targets, t => Assert.Equal("${datasource}", t!["datasource"]!["uid"]!.GetValue<string>()));
            Assert.Equal(targets.Count, targets.Select(t => t!["refId"]!.GetValue<string>()).Distinct().Count());
        }
    }

    [Fact]
    public void FlushPhasesPanel_StacksThePhasesWithTheGracePeriodAsAnUnstackedLine()
    {
        var panel = Assert.Single(Panels, p => Exprs(p).Any(e => e.Contains("checkpoint_last_flush_phase_seconds", StringComparison.Ordinal)));
        var exprs = Exprs(panel);
        Assert.Contains(exprs, e => e.Contains("phase!=\"total\"", StringComparison.Ordinal));
        Assert.Contains(exprs, e => e.StartsWith("checkpoint_grace_period_seconds", StringComparison.Ordinal));
        Assert.Equal("normal", panel["fieldConfig"]!["defaults"]!["custom"]!["stacking"]!["mode"]!.GetValue<string>());
        var grace = Assert.Single(panel["fieldConfig"]!["overrides"]!.AsArray(), o => o!["matcher"]!["options"]!.GetValue<string>() == "grace period G");
        var stacking = Assert.Single(grace!["properties"]!.AsArray(), p => p!["id"]!.GetValue<string>() == "custom.stacking");
        Assert.Equal("none", stacking!["value"]!["mode"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("checkpoint_last_flush_budget_used_ratio")]
    [InlineData("checkpoint_predicted_flush_budget_ratio")]
    [InlineData("checkpoint_flush_throughput_bytes_per_second")]
    [InlineData("time() - (checkpoint_last_committed_timestamp_seconds")]
    [InlineData("checkpoint_trainers_attached")]
    [InlineData("checkpoint_flush_failures_total")]
    [InlineData("checkpoint_deadline_misses_total")]
    [InlineData("checkpoint_last_flush_deadline_missed")]
    [InlineData("checkpoint_verify_failures_total")]
    [InlineData("checkpoint_recommended_grace_period_seconds")]
    [InlineData("checkpoint_job_commit_wait_seconds_bucket")]
    [InlineData("checkpoint_job_missing_ranks")]
    [InlineData("cause=\"job_incomplete\"")]
    [InlineData("checkpoint_recommended_interval_seconds")]
    [InlineData("checkpoint_observed_periodic_interval_seconds")]
    [InlineData("checkpoint_periodic_cost_seconds")]
    [InlineData("checkpoint_observed_mtbf_seconds")]
    [InlineData("checkpoint_observed_preemptions")]
    public void Dashboard_HasAPanelQuerying(string fragment) =>
        Assert.Contains(MetricNames.DashboardExpressions(), e => e.Expr.Contains(fragment, StringComparison.Ordinal));

    [Fact]
    public void BudgetPanel_MarksTheAlertThresholdOfTheRules()
    {
        var panel = Assert.Single(Panels, p => Exprs(p).Any(e => e.Contains("checkpoint_predicted_flush_budget_ratio", StringComparison.Ordinal)));
        var steps = panel["fieldConfig"]!["defaults"]!["thresholds"]!["steps"]!.AsArray();
        Assert.Contains(steps, s => s!["value"]?.GetValue<double>() == 0.8);
        Assert.Contains(MetricNames.RuleExpressions(), r => r.Expr == "checkpoint_predicted_flush_budget_ratio > 0.8");
    }

    [Fact]
    public void JobWideRow_PanelsAggregatePerJobAndTheAlertDescriptionNamesTheRow()
    {
        var all = Dashboard["panels"]!.AsArray().Select(p => p!).ToList();
        var row = Assert.Single(all, p => p["type"]!.GetValue<string>() == "row" && p["title"]!.GetValue<string>() == "Job-wide checkpoints");
        var top = row["gridPos"]!["y"]!.GetValue<int>();
        var panels = all.Where(p => p["type"]!.GetValue<string>() != "row" && p["gridPos"]!["y"]!.GetValue<int>() == top + 1).ToList();
        Assert.Equal(4, panels.Count);
        Assert.Equal(24, panels.Sum(p => p["gridPos"]!["w"]!.GetValue<int>()));

        // Every query of the row selects the job's series and aggregates by job (the by-pod panel, by pod too).
        foreach (var expr in panels.SelectMany(Exprs))
        {
            Assert.Contains("job_name=~\"$job_name\"", expr, StringComparison.Ordinal);
            Assert.Contains("by (namespace, job_name", expr, StringComparison.Ordinal);
        }

        // Job-level panels are over every pod of the job, whatever pods are chosen.
        var byPod = Assert.Single(panels, p => Exprs(p).Any(e => e.Contains("by (namespace, job_name, pod, le)", StringComparison.Ordinal)));
        Assert.All(panels.Where(p => p != byPod).SelectMany(Exprs), e => Assert.DoesNotContain("$pod", e, StringComparison.Ordinal));

        var straggler = Assert.Single(MetricNames.RuleExpressions(), r => r.Alert == "CheckpointJobCommitWaitHigh");
        var description = Yaml.Load(File.ReadAllText(DeployPaths.RulesFile))["groups"]!.AsArray()
            .SelectMany(g => g!["rules"]!.AsArray())
            .Single(r => r!["alert"]?.GetValue<string>() == straggler.Alert)!["annotations"]!["description"]!.GetValue<string>();
        Assert.Contains("dashboard row \"Job-wide checkpoints\"", description, StringComparison.Ordinal);
    }

    [Fact]
    public void CommitWaitPanel_ShowsP50AndP95PerJobOverTheAlertsWindowAndItsThreshold()
    {
        var panel = Assert.Single(Panels, p => Exprs(p).Any(e => e.Contains("histogram_quantile(0.95, sum by (namespace, job_name, le) (rate(checkpoint_job_commit_wait_seconds_bucket", StringComparison.Ordinal)));
        var exprs = Exprs(panel);
        Assert.Contains(exprs, e => e.StartsWith("histogram_quantile(0.5, sum by (namespace, job_name, le) (rate(checkpoint_job_commit_wait_seconds_bucket{", StringComparison.Ordinal));
        Assert.All(exprs.Where(e => e.StartsWith("histogram_quantile", StringComparison.Ordinal)), e => Assert.EndsWith("[1h])))", e, StringComparison.Ordinal));
        Assert.Contains(exprs, e => e.StartsWith("0.25 * min by (namespace, job_name) (checkpoint_grace_period_seconds{", StringComparison.Ordinal));

        // The same quantile, window and threshold as the alert.
        var rule = Assert.Single(MetricNames.RuleExpressions(), r => r.Alert == "CheckpointJobCommitWaitHigh");
        Assert.Equal(
            "histogram_quantile(0.95, sum by (namespace, job_name, le) (rate(checkpoint_job_commit_wait_seconds_bucket[1h]))) > 0.25 * min by (namespace, job_name) (checkpoint_grace_period_seconds)",
            rule.Expr);
    }

    [Fact]
    public void IntervalPanel_ShowsTheRecommendationNextToTheIntervalInUsePerJob()
    {
        var panel = Assert.Single(Panels, p => Exprs(p).Any(e => e.Contains("checkpoint_recommended_interval_seconds", StringComparison.Ordinal)));
        var exprs = Exprs(panel);
        Assert.Equal(2, exprs.Count);
        Assert.Contains(exprs, e => e.Contains("checkpoint_observed_periodic_interval_seconds", StringComparison.Ordinal));
        Assert.Equal("s", panel["fieldConfig"]!["defaults"]!["unit"]!.GetValue<string>());
        // Every pod of a job reads the same flush records: one line per job, whatever pods are chosen.
        Assert.All(exprs, e => Assert.StartsWith("max by (namespace, job_name) (", e, StringComparison.Ordinal));
        Assert.All(exprs, e => Assert.DoesNotContain("$pod", e, StringComparison.Ordinal));
    }

    private static List<string> Exprs(JsonNode panel) =>
        panel["targets"]!.AsArray().Select(t => t!["expr"]!.GetValue<string>()).ToList();
}
