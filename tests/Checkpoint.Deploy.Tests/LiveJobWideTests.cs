using System.Globalization;
using System.Text.Json.Nodes;
using Checkpoint.Deploy.Tests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// The job-wide pieces of the observability against two real published sidecars, the pods of one job
/// sharing one storage directory, scraped by a real Prometheus with the labels the PodMonitor gives
/// them: a checkpoint that commits after one pod sealed well before the other (a commit wait), then one
/// that fails because the other pod never seals (job_incomplete, one rank missing). The dashboard's
/// job-wide queries answer with those figures, and the rules fire CheckpointJobIncomplete for the job
/// while CheckpointFlushFailed and CheckpointJobCommitWaitHigh stay quiet.
/// </summary>
public sealed class LiveJobWideTests
{
    private const string WorldId = "deploytest";

    /// <summary>How long a sealed shard of a periodic checkpoint waits for the others: short, so the failure comes soon.</summary>
    private const int CommitTimeoutSeconds = 10;

    /// <summary>G of both pods: CheckpointJobCommitWaitHigh fires above a quarter of it (15 s), far above the straggler's delay.</summary>
    private const int GracePeriodSeconds = 60;

    /// <summary>How long after train-0 the straggler train-1 starts its dump: well under the timeout.</summary>
    private static readonly TimeSpan StragglerDelay = TimeSpan.FromSeconds(1.5);

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static readonly string[] JobWideRowPanels =
    [
        "Commit wait per job, p50 and p95 (1 h)",
        "Commit wait by pod, p95 (1 h)",
        "Ranks missing at the last failed job-wide checkpoint",
        "Job-wide checkpoints failed for missing shards",
    ];

    [Fact]
    public async Task RealPrometheus_TwoPodsOfAJob_DashboardShowsCommitWaitAndMissingRanks_AndJobIncompleteFires()
    {
        using var shared = new TestDirectories();
        using var dirs0 = new TestDirectories();
        using var dirs1 = new TestDirectories();
        await using var pod0 = await StartPodAsync(dirs0, shared.Storage, "train-0");
        await using var pod1 = await StartPodAsync(dirs1, shared.Storage, "train-1");

        await using var prometheus = await PrometheusServer.StartAsync(
            [Target(pod0, "train-0"), Target(pod1, "train-1")], [DeployPaths.RulesFile, DeployPaths.RecordingRulesFile]);

        // Both pods scraped at least twice before anything happens, so rate() and increase() see the
        // counters and histograms rise from zero. The job-wide series exist from the start.
        await UntilScalarAsync(prometheus, "min(count_over_time(checkpoint_job_missing_ranks[1m]))", v => v >= 2, "two scrapes of both pods");
        Assert.Equal(0, await ScalarAsync(prometheus, "sum(checkpoint_job_missing_ranks)"));
        Assert.Equal(2, await ScalarAsync(prometheus, "count(checkpoint_flush_failures_total{cause=\"job_incomplete\"} == 0)"));

        await using var rank0 = await ConnectAsync(pod0, rank: 0);
        await using var rank1 = await ConnectAsync(pod1, rank: 1);

        // Step 10: train-0 seals first and waits for the straggler train-1; both commit the same step.
        // The straggler starts its dump a delay after train-0 has sealed (not after it started: on a
        // loaded machine train-0's dump, copy and seal may take most of the delay).
        var sealedFirst = TrainerFiles.CheckpointAsync(rank0, 10, 0, ("model.bin", 1 << 20));
        await pod0.Process.WaitForLineAsync(@"is sealed; waiting for rank\(s\) 1 \(1 of 2\)");
        await Task.Delay(StragglerDelay);
        var sealedLast = await TrainerFiles.CheckpointAsync(rank1, 10, 1, ("model.bin", 1 << 20)).WaitAsync(Bound);
        var waited = await sealedFirst.WaitAsync(Bound);
        Assert.Equal(CheckpointStatus.Committed, waited.Status);
        Assert.Equal(CheckpointStatus.Committed, sealedLast.Status);
        Assert.True(
            waited.Timings!.CommitWait > TimeSpan.FromSeconds(1) && waited.Timings.CommitWait > sealedLast.Timings!.CommitWait,
            $"train-0 waited {waited.Timings.CommitWait}, train-1 {sealedLast.Timings!.CommitWait}");

        // The recording rules on the same series: both pods know step 10 as the newest commit, and the
        // job's training at risk is the time since it (at most the time since train-0 dumped).
        var committedAt = DateTimeOffset.UtcNow;
        await UntilScalarAsync(prometheus, "count(checkpoint_newest_commit_step == 10)", v => v == 2, "both pods' newest commit, step 10, scraped");
        await UntilScalarAsync(prometheus, "count(pod:checkpoint_training_at_risk_seconds)", v => v == 2, "the per-pod recording rule evaluated");
        var atRisk = await ResultAsync(prometheus, "job:checkpoint_training_at_risk_seconds:min");
        var jobAtRisk = Assert.Single(atRisk);
        Assert.Equal("train", jobAtRisk.Labels["job_name"]!.GetValue<string>());
        Assert.InRange(jobAtRisk.Value, 0, (DateTimeOffset.UtcNow - committedAt).TotalSeconds + Bound.TotalSeconds);

        // Step 20: only train-0 dumps; after the commit timeout its checkpoint fails with rank 1 missing.
        var failed = await TrainerFiles.CheckpointAsync(rank0, 20, 0, ("model.bin", 1 << 20)).WaitAsync(Bound);
        Assert.Equal(CheckpointStatus.Failed, failed.Status);
        Assert.Equal([1], failed.MissingRanks.ToArray());

        await UntilScalarAsync(
            prometheus, "checkpoint_flush_failures_total{pod=\"train-0\", cause=\"job_incomplete\"}", v => v == 1, "train-0's job_incomplete failure scraped");

        // Every query of the job-wide row, with Grafana's variables filled in, answers with this job's figures.
        var row = MetricNames.DashboardExpressions().Where(e => JobWideRowPanels.Contains(e.Panel)).ToList();
        Assert.Equal(JobWideRowPanels, row.Select(e => e.Panel).Distinct());
        var answers = new Dictionary<string, List<(JsonNode Labels, double Value)>>();
        foreach (var (panel, expr) in row)
        {
            var result = await ResultAsync(prometheus, Grafana(expr));
            Assert.True(result.Count > 0, $"panel '{panel}': `{Grafana(expr)}` answered no series");
            Assert.All(result, r => Assert.Equal("train", r.Labels["job_name"]!.GetValue<string>()));
            answers[expr] = result;
        }

        var perJob = row.Where(e => e.Panel == JobWideRowPanels[0]).Select(e => answers[e.Expr].Single()).ToList();
        var (p50, p95, threshold) = (perJob[0].Value, perJob[1].Value, perJob[2].Value);
        Assert.InRange(p95, 1, 2 * StragglerDelay.TotalSeconds + CommitTimeoutSeconds);
        Assert.InRange(p50, 0, p95);
        Assert.Equal(0.25 * GracePeriodSeconds, threshold);
        Assert.True(p95 < threshold, $"the straggler test must not reach CheckpointJobCommitWaitHigh's threshold: p95 {p95} s");

        var perPod = answers[row.Single(e => e.Panel == JobWideRowPanels[1]).Expr]
            .ToDictionary(r => r.Labels["pod"]!.GetValue<string>(), r => r.Value);
        Assert.True(perPod["train-1"] < perPod["train-0"], $"the straggler waits least: {string.Join(", ", perPod)}");

        Assert.Equal(1, answers[row.Single(e => e.Panel == JobWideRowPanels[2]).Expr].Single().Value);
        Assert.True(answers[row.Single(e => e.Panel == JobWideRowPanels[3]).Expr].Single().Value > 0);

        // The rules on the same series: CheckpointJobIncomplete fires for the job, naming one missing
        // rank; the pod-level failure alert and the straggler alert stay quiet; every rule evaluates.
        var alert = await PrometheusServer.UntilAsync(
            async () =>
            {
                var answer = await prometheus.GetAsync("api/v1/alerts");
                var firing = answer["data"]!["alerts"]!.AsArray()
                    .FirstOrDefault(a => a!["labels"]!["alertname"]!.GetValue<string>() == "CheckpointJobIncomplete" && a["state"]!.GetValue<string>() == "firing");
                return (firing, answer.ToJsonString());
            },
            Bound,
            "CheckpointJobIncomplete firing");
        Assert.Equal("train", alert["labels"]!["job_name"]!.GetValue<string>());
        Assert.Null(alert["labels"]!["pod"]);
        Assert.Equal("A job-wide checkpoint failed with 1 rank(s) of other pods missing", alert["annotations"]!["summary"]!.GetValue<string>());

        var rules = (await prometheus.GetAsync("api/v1/rules"))["data"]!["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()).ToList();
        Assert.All(rules, r => Assert.True(r!["health"]!.GetValue<string>() == "ok", r.ToJsonString()));
        Assert.Contains(rules, r => r!["type"]!.GetValue<string>() == "recording");
        var firingOrPending = rules.Where(r => r!["type"]!.GetValue<string>() == "alerting" && r["state"]!.GetValue<string>() != "inactive").Select(r => r!["name"]!.GetValue<string>()).ToList();
        Assert.Equal(["CheckpointJobIncomplete"], firingOrPending);
    }

    private static Task<SidecarProcess> StartPodAsync(TestDirectories dirs, string storage, string pod) =>
        SidecarProcess.StartAsync(dirs, storage, new Dictionary<string, string>
        {
            ["POD_NAME"] = pod,
            ["CHECKPOINT_JOB_COMMIT_TIMEOUT_SECONDS"] = CommitTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
            ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = GracePeriodSeconds.ToString(CultureInfo.InvariantCulture),
        });

    private static (string, IReadOnlyDictionary<string, string>) Target(SidecarProcess sidecar, string pod) =>
        ($"127.0.0.1:{sidecar.MetricsPort}", new Dictionary<string, string> { ["namespace"] = "ml", ["job_name"] = "train", ["pod"] = pod });

    private static Task<CheckpointClient> ConnectAsync(SidecarProcess sidecar, int rank) =>
        CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = sidecar.SocketPath,
            Rank = rank,
            WorldSize = 2,
            WorldId = WorldId,
            Description = $"deploy test rank {rank}",
            HandleTermination = false,
        });

    /// <summary>A dashboard expression as Grafana sends it with every job and pod selected.</summary>
    private static string Grafana(string expr) => expr
        .Replace("$__rate_interval", "1m", StringComparison.Ordinal)
        .Replace("$namespace", ".*", StringComparison.Ordinal)
        .Replace("$job_name", ".*", StringComparison.Ordinal)
        .Replace("$pod", ".*", StringComparison.Ordinal)
        .Replace("$reason", "periodic", StringComparison.Ordinal);

    private static async Task<List<(JsonNode Labels, double Value)>> ResultAsync(PrometheusServer prometheus, string promql)
    {
        var answer = await prometheus.QueryAsync(promql);
        Assert.True(answer["status"]?.GetValue<string>() == "success", $"`{promql}` -> {answer.ToJsonString()}");
        return answer["data"]!["result"]!.AsArray()
            .Select(r => (r!["metric"]!, double.Parse(r["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture)))
            .ToList();
    }

    private static async Task<double> ScalarAsync(PrometheusServer prometheus, string promql) =>
        Assert.Single(await ResultAsync(prometheus, promql)).Value;

    private static Task<JsonNode> UntilScalarAsync(PrometheusServer prometheus, string promql, Func<double, bool> condition, string what) =>
        PrometheusServer.UntilAsync(
            async () =>
            {
                var answer = await prometheus.QueryAsync(promql);
                var result = answer["data"]?["result"]?.AsArray();
                var value = result is [{ } only] ? double.Parse(only["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture) : double.NaN;
                return (!double.IsNaN(value) && condition(value) ? answer : null, answer.ToJsonString());
            },
            Bound,
            what);
}
