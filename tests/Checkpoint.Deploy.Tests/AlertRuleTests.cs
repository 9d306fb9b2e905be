using System.Text.Json.Nodes;
using Checkpoint.Deploy.Tests.Infrastructure;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// The alert rules, through promtool: they load, their unit tests pass, and the unit tests are strong
/// enough that an alert that never fires, or fires for everything, fails them.
/// </summary>
public sealed class AlertRuleTests
{
    /// <summary>Fires for every label set of every checkpoint series: any "stays quiet" case must fail.</summary>
    private const string FiresForEverything = "count without (__name__) ({__name__=~\"checkpoint_.+\"})";

    /// <summary>Never fires: any "fires" case must fail.</summary>
    private const string NeverFires = "vector(0) > 1";

    public static TheoryData<string> Alerts => new(MetricNames.RuleExpressions().Select(r => r.Alert));

    [Fact]
    public async Task PromtoolCheckRules_AcceptsTheRulesFile()
    {
        var result = await Tool.RunAsync("promtool", ["check", "rules", DeployPaths.RulesFile]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"SUCCESS: {MetricNames.RuleExpressions().Count()} rules found", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PromtoolTestRules_EveryAlertFiresAndStaysQuietWhenItShould()
    {
        var result = await Tool.RunAsync("promtool", ["test", "rules", DeployPaths.RulesTestFile]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("SUCCESS", result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Alerts))]
    public void RulesTestFile_HasAFiringAndAQuietCaseForTheAlert(string alert)
    {
        var cases = Yaml.Load(File.ReadAllText(DeployPaths.RulesTestFile))["tests"]!.AsArray()
            .SelectMany(t => t!["alert_rule_test"]?.AsArray() ?? [])
            .Where(c => c!["alertname"]!.GetValue<string>() == alert)
            .ToList();
        Assert.Contains(cases, c => c!["exp_alerts"] is JsonArray { Count: > 0 });
        Assert.Contains(cases, c => c!["exp_alerts"] is null or JsonArray { Count: 0 });
    }

    [Theory]
    [MemberData(nameof(Alerts))]
    public async Task RulesTests_FailWhenTheAlertNeverFires(string alert) => await AssertMutationCaughtAsync(alert, NeverFires);

    [Theory]
    [MemberData(nameof(Alerts))]
    public async Task RulesTests_FailWhenTheAlertFiresForEverything(string alert) => await AssertMutationCaughtAsync(alert, FiresForEverything);

    [Fact]
    public void PrometheusRule_CarriesExactlyTheGroupsOfTheRulesFile()
    {
        var rules = Yaml.Load(File.ReadAllText(DeployPaths.RulesFile));
        var resource = Yaml.Load(File.ReadAllText(DeployPaths.PrometheusRuleFile));
        Assert.Equal("monitoring.coreos.com/v1", resource["apiVersion"]!.GetValue<string>());
        Assert.Equal("PrometheusRule", resource["kind"]!.GetValue<string>());
        Assert.True(
            JsonNode.DeepEquals(rules, resource["spec"]),
            "deploy/observability/prometheusrule.yaml differs from rules/checkpoint-alerts.yaml: run deploy/observability/sync-prometheusrule.sh");
    }

    /// <summary>Replaces one alert's expression in a copy of the rules and expects promtool's unit tests to fail on that alert.</summary>
    private static async Task AssertMutationCaughtAsync(string alert, string expr)
    {
        var dir = Directory.CreateTempSubdirectory("ckpt-rules-");
        try
        {
            var stream = new YamlStream();
            using (var reader = new StringReader(await File.ReadAllTextAsync(DeployPaths.RulesFile)))
            {
                stream.Load(reader);
            }

            var root = (YamlMappingNode)stream.Documents[0].RootNode;
            var rule = ((YamlSequenceNode)root["groups"]).Cast<YamlMappingNode>()
                .SelectMany(g => ((YamlSequenceNode)g["rules"]).Cast<YamlMappingNode>())
                .Single(r => r.Children.TryGetValue(new YamlScalarNode("alert"), out var name) && ((YamlScalarNode)name).Value == alert);
            rule.Children[new YamlScalarNode("expr")] = new YamlScalarNode(expr);
            await using (var writer = new StreamWriter(Path.Combine(dir.FullName, Path.GetFileName(DeployPaths.RulesFile))))
            {
                stream.Save(writer, assignAnchors: false);
            }

            var tests = Path.Combine(dir.FullName, Path.GetFileName(DeployPaths.RulesTestFile));
            File.Copy(DeployPaths.RulesTestFile, tests);
            var result = await Tool.RunAsync("promtool", ["test", "rules", tests], workingDirectory: dir.FullName);
            Assert.True(result.ExitCode != 0, $"the rules tests still pass with {alert}'s expr replaced by `{expr}`:\n{result}");
            Assert.Contains($"alertname: {alert},", result.Stdout + result.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
