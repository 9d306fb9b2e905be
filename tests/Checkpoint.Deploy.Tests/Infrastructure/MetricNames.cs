using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>Metric names that the rules and the dashboard use, and those a live sidecar exports.</summary>
internal static partial class MetricNames
{
    /// <summary>
    /// Names the rules and dashboard use that come with the sidecar change of issue 3 (prediction,
    /// preemption cause, re-exported deadline miss). Until the published sidecar exports them, the
    /// consistency test fails and names them as such; it never skips them.
    /// </summary>
    public static readonly string[] ExpectedFromIssue3 =
    [
        "checkpoint_predicted_flush_seconds",
        "checkpoint_predicted_flush_budget_ratio",
        "checkpoint_recommended_grace_period_seconds",
        "checkpoint_preemptions_total",
        "checkpoint_last_flush_deadline_missed",
    ];

    [GeneratedRegex(@"\bcheckpoint_[a-z0-9_]*[a-z0-9]\b")]
    private static partial Regex Name();

    [GeneratedRegex(@"^# TYPE (\S+) (\S+)$", RegexOptions.Multiline)]
    private static partial Regex TypeLine();

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", RegexOptions.Multiline)]
    private static partial Regex SampleLine();

    public static IEnumerable<string> In(string text) => Name().Matches(text).Select(m => m.Value);

    /// <summary>Every PromQL expression of the alert rules, with the alert's name.</summary>
    public static IEnumerable<(string Alert, string Expr)> RuleExpressions()
    {
        var rules = Yaml.Load(File.ReadAllText(DeployPaths.RulesFile));
        foreach (var group in rules["groups"]!.AsArray())
        {
            foreach (var rule in group!["rules"]!.AsArray())
            {
                yield return (rule!["alert"]?.GetValue<string>() ?? rule["record"]!.GetValue<string>(), rule["expr"]!.GetValue<string>());
            }
        }
    }

    /// <summary>Names in the rules' expressions and annotations (annotations point operators at metrics too).</summary>
    public static SortedSet<string> UsedByRules()
    {
        var rules = Yaml.Load(File.ReadAllText(DeployPaths.RulesFile));
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var rule in rules["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()))
        {
            names.UnionWith(In(rule!["expr"]!.GetValue<string>()));
            foreach (var (_, value) in rule["annotations"]?.AsObject() ?? [])
            {
                names.UnionWith(In(value!.GetValue<string>()));
            }
        }

        return names;
    }

    public static JsonNode Dashboard() => JsonNode.Parse(File.ReadAllText(DeployPaths.DashboardFile))!;

    /// <summary>Every panel's query expressions, in panel order.</summary>
    public static IEnumerable<(string Panel, string Expr)> DashboardExpressions()
    {
        foreach (var panel in Dashboard()["panels"]!.AsArray())
        {
            foreach (var target in panel!["targets"]?.AsArray() ?? [])
            {
                yield return (panel["title"]!.GetValue<string>(), target!["expr"]!.GetValue<string>());
            }
        }
    }

    /// <summary>Names anywhere in the dashboard: queries, variable queries, descriptions.</summary>
    public static SortedSet<string> UsedByDashboard() => new(In(File.ReadAllText(DeployPaths.DashboardFile)), StringComparer.Ordinal);

    /// <summary>Series names an exposition offers: families from # TYPE (histograms as _bucket, _sum, _count) and samples.</summary>
    public static SortedSet<string> Exported(string exposition)
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (Match match in TypeLine().Matches(exposition))
        {
            var (name, type) = (match.Groups[1].Value, match.Groups[2].Value);
            names.Add(name);
            if (type is "histogram" or "summary")
            {
                names.UnionWith([name + "_bucket", name + "_sum", name + "_count"]);
            }
        }

        names.UnionWith(SampleLine().Matches(exposition).Select(m => m.Groups[1].Value));
        return names;
    }
}
