using System.Text.Json.Nodes;
using Checkpoint.Deploy.Tests.Infrastructure;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// The recording rules of what a preemption would cost (training at risk, per pod and per job),
/// through promtool: they load, their unit tests pass and catch a wrong expression, and the
/// PrometheusRule the operator reads carries exactly them.
/// </summary>
public sealed class RecordingRuleTests
{
    private static string RulesFile => DeployPaths.RecordingRulesFile;

    private static string TestFile => Path.Combine(DeployPaths.Observability, "rules", "checkpoint-recording.test.yaml");

    private static string PrometheusRuleFile => Path.Combine(DeployPaths.Observability, "prometheusrule-recording.yaml");

    [Fact]
    public async Task PromtoolCheckRules_AcceptsTheRecordingRules()
    {
        var result = await Tool.RunAsync("promtool", ["check", "rules", RulesFile]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("SUCCESS: 2 rules found", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PromtoolTestRules_TrainingAtRiskPerPodAndPerJob()
    {
        var result = await Tool.RunAsync("promtool", ["test", "rules", TestFile]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("SUCCESS", result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("checkpoint_newest_commit_timestamp_seconds", "checkpoint_last_committed_timestamp_seconds")]
    [InlineData("min by (namespace, job_name)", "max by (namespace, job_name)")]
    [InlineData("time() - checkpoint_newest_commit_timestamp_seconds\n", "checkpoint_newest_commit_timestamp_seconds\n")]
    public async Task PromtoolTestRules_FailWhenARuleIsWrong(string right, string wrong)
    {
        var dir = Directory.CreateTempSubdirectory("ckpt-recording-");
        try
        {
            var rules = await File.ReadAllTextAsync(RulesFile);
            Assert.Contains(right, rules, StringComparison.Ordinal);
            await File.WriteAllTextAsync(Path.Combine(dir.FullName, Path.GetFileName(RulesFile)), rules.Replace(right, wrong, StringComparison.Ordinal));
            var tests = Path.Combine(dir.FullName, Path.GetFileName(TestFile));
            File.Copy(TestFile, tests);

            var result = await Tool.RunAsync("promtool", ["test", "rules", tests], workingDirectory: dir.FullName);

            Assert.True(result.ExitCode != 0, $"the recording rules tests still pass with `{right}` replaced by `{wrong}`:\n{result}");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task PrometheusRule_CarriesExactlyTheRecordingRules_AndTheKustomizationHasIt()
    {
        var rules = Yaml.Load(await File.ReadAllTextAsync(RulesFile));
        var resource = Yaml.Load(await File.ReadAllTextAsync(PrometheusRuleFile));
        Assert.Equal("PrometheusRule", resource["kind"]!.GetValue<string>());
        Assert.True(
            JsonNode.DeepEquals(rules, resource["spec"]),
            "deploy/observability/prometheusrule-recording.yaml differs from rules/checkpoint-recording.yaml: run deploy/observability/sync-prometheusrule.sh");

        var documents = await Kustomize.BuildDocumentsAsync("deploy/observability");
        Assert.Contains(documents, d => d["kind"]?.GetValue<string>() == "PrometheusRule"
            && d["metadata"]!["name"]!.GetValue<string>() == "checkpoint-sidecar-recording");
    }
}
