namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>The files under deploy/ these tests read.</summary>
internal static class DeployPaths
{
    public static string Deploy => Path.Combine(RepoPaths.Root, "deploy");

    public static string Observability => Path.Combine(Deploy, "observability");

    public static string RulesFile => Path.Combine(Observability, "rules", "checkpoint-alerts.yaml");

    public static string RecordingRulesFile => Path.Combine(Observability, "rules", "checkpoint-recording.yaml");

    public static string RulesTestFile => Path.Combine(Observability, "rules", "checkpoint-alerts.test.yaml");

    public static string PrometheusRuleFile => Path.Combine(Observability, "prometheusrule.yaml");

    public static string DashboardFile => Path.Combine(Observability, "grafana-dashboard.json");
}
