namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>The repository, deploy/ and the published sidecar, found from the test assembly's location.</summary>
internal static class RepoPaths
{
    public const string SidecarBinaryVariable = "CHECKPOINT_SIDECAR_BIN";

    public static string Root { get; } = FindRoot();

    public static string Deploy => Path.Combine(Root, "deploy");

    public static string Observability => Path.Combine(Deploy, "observability");

    public static string RulesFile => Path.Combine(Observability, "rules", "checkpoint-alerts.yaml");

    public static string RulesTestFile => Path.Combine(Observability, "rules", "checkpoint-alerts.test.yaml");

    public static string PrometheusRuleFile => Path.Combine(Observability, "prometheusrule.yaml");

    public static string DashboardFile => Path.Combine(Observability, "grafana-dashboard.json");

    /// <summary>The published Native AOT sidecar: tests/run-tests.sh publishes it and sets the variable.</summary>
    public static string SidecarBinary
    {
        get
        {
            var path = Environment.GetEnvironmentVariable(SidecarBinaryVariable);
            if (string.IsNullOrEmpty(path))
            {
                path = Path.Combine(Root, "artifacts", "sidecar", "checkpoint-sidecar");
            }

            return File.Exists(path)
                ? path
                : throw new FileNotFoundException(
                    $"The published sidecar '{path}' does not exist. Run tests/run-tests.sh, which publishes it, " +
                    $"or set {SidecarBinaryVariable} to a published checkpoint-sidecar binary.");
        }
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Checkpoint.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"Checkpoint.sln not found above {AppContext.BaseDirectory}");
    }
}
