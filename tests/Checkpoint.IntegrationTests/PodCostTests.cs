using System.Globalization;
using System.Text.RegularExpressions;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// What preempting the pod would cost, kept on the pod by the real sidecar against the fake
/// Kubernetes API server (real Kubernetes JSON, merge patches applied as the API server does): the
/// annotations after a commit, the rate limit, API failures that never touch a flush, and the
/// GracePeriodTooShort Event.
/// </summary>
public sealed class PodCostTests
{
    private const string PodName = "train-0-cost";
    private const string Prefix = "checkpoint-sidecar/";
    private const string Step = Prefix + "newest-commit-step";

    [Fact]
    public async Task Commit_AnnotatesThePod_WithStepTimeAndPrediction()
    {
        using var dirs = new TestDirectories();
        await using var api = new FakeKubernetesApi(FakeKubernetesApi.Pod(PodName, gracePeriodSeconds: 45));
        await using var sidecar = await StartAsync(dirs, api, intervalSeconds: 1);
        await using var client = await sidecar.ConnectAsync();
        await sidecar.Process.WaitForLineAsync("Grace period 45 s read from pod");

        var before = DateTimeOffset.UtcNow;
        var outcome = await TrainerFiles.CheckpointAsync(client, 7, 0, ("model.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        var after = DateTimeOffset.UtcNow;

        var patch = await api.WaitForPatchAsync(p => p.Annotations.GetValueOrDefault(Step) == "7");
        var annotations = patch.Annotations;
        Assert.Equal("45", annotations[Prefix + "grace-period-seconds"]);
        var committed = DateTimeOffset.Parse(annotations[Prefix + "newest-commit-time"], CultureInfo.InvariantCulture);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", annotations[Prefix + "newest-commit-time"]);
        Assert.InRange(committed, before.AddSeconds(-1), after);
        var predicted = Number(annotations[Prefix + "predicted-preemption-flush-seconds"]);
        Assert.InRange(predicted, 0.001, 45);
        Assert.Equal(predicted / 45, Number(annotations[Prefix + "predicted-preemption-flush-ratio"]), tolerance: 0.001);
        // The patch set the cost annotations only: the pod's other metadata stayed as it was.
        Assert.All(patch.Sent.Keys, k => Assert.StartsWith(Prefix, k, StringComparison.Ordinal));

        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Equal(7, MetricsExposition.Value(metrics, "checkpoint_newest_commit_step"));
        Assert.Equal(committed.ToUnixTimeSeconds(), Math.Floor(MetricsExposition.Value(metrics, "checkpoint_newest_commit_timestamp_seconds")));
        Assert.Equal(predicted, MetricsExposition.Value(metrics, "checkpoint_predicted_flush_seconds"), tolerance: 0.001);
        Assert.Equal(
            MetricsExposition.Value(metrics, "checkpoint_recommended_grace_period_seconds"),
            Number(annotations[Prefix + "recommended-grace-period-seconds"]));
    }

    [Fact]
    public async Task CommitsWithinTheInterval_CoalesceIntoOnePatchOfTheNewest()
    {
        const int interval = 10;
        using var dirs = new TestDirectories();
        await using var api = new FakeKubernetesApi(FakeKubernetesApi.Pod(PodName, gracePeriodSeconds: 45));
        await using var sidecar = await StartAsync(dirs, api, interval);
        await using var client = await sidecar.ConnectAsync();
        // The first patch goes at once (G, nothing committed yet); the interval runs from it.
        var first = await api.WaitForPatchAsync(_ => true);

        foreach (var step in new[] { 1, 2, 3 })
        {
            Assert.Equal(CheckpointStatus.Committed, (await TrainerFiles.CheckpointAsync(client, step, 0, ("model.bin", 4096))).Status);
        }

        var last = await api.WaitForPatchAsync(p => p.Annotations.GetValueOrDefault(Step) == "3");
        var committedIn = last.At - first.At;

        // Every patch at least an interval after the one before, and the commits between coalesced:
        // on an idle machine the three commits fit in one interval, so the newest is the only patch
        // after the first; a loaded machine may spread them over more intervals, never more patches.
        var patches = api.Patches.ToList();
        Assert.Equal(first, patches[0]);
        Assert.Equal(last, patches[^1]);
        for (var i = 1; i < patches.Count; i++)
        {
            var gap = patches[i].At - patches[i - 1].At;
            // Half the interval: a loaded machine may delay one patch's sending or arrival by seconds;
            // patches not held back at all come within milliseconds of each other.
            Assert.True(gap >= TimeSpan.FromSeconds(interval / 2.0), $"patch {i} came {gap.TotalSeconds:F1} s after the previous one");
        }

        Assert.True(patches.Count <= 1 + (int)Math.Ceiling(committedIn.TotalSeconds / interval), $"{patches.Count} patches in {committedIn.TotalSeconds:F1} s");
        Assert.True(patches.Count < 4, "each of the three commits was patched on its own: nothing was coalesced");
    }

    [Theory]
    [InlineData(500, "http_500")]
    [InlineData(403, "http_403")]
    public async Task ApiRefuses_FlushesStillCommit_FailureLoggedOnce_NextPatchAfterRecovery(int status, string kind)
    {
        using var dirs = new TestDirectories();
        await using var api = new FakeKubernetesApi(FakeKubernetesApi.Pod(PodName, gracePeriodSeconds: 45)) { FailWrites = status };
        await using var sidecar = await StartAsync(dirs, api, intervalSeconds: 1);
        await using var client = await sidecar.ConnectAsync();

        Assert.Equal(CheckpointStatus.Committed, (await TrainerFiles.CheckpointAsync(client, 1, 0, ("model.bin", 4096))).Status);
        await sidecar.Process.WaitForLineAsync($"Could not annotate pod {PodName} \\({kind}\\)");
        // Retried once an interval, refused each time, while flushes go on.
        await api.WaitForRefusedWritesAsync(3);
        Assert.Equal(CheckpointStatus.Committed, (await TrainerFiles.CheckpointAsync(client, 2, 0, ("model.bin", 4096))).Status);
        await api.WaitForRefusedWritesAsync(4);

        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.True(MetricsExposition.Value(metrics, $"checkpoint_kubernetes_api_failures_total{{operation=\"annotate\",kind=\"{kind}\"}}") >= 3);
        Assert.Equal(1, sidecar.Process.Lines.Count(l => l.Contains("Could not annotate pod", StringComparison.Ordinal)));
        Assert.Empty(api.Patches);

        api.FailWrites = null;
        var patch = await api.WaitForPatchAsync(p => p.Annotations.GetValueOrDefault(Step) == "2");
        Assert.Equal("45", patch.Annotations[Prefix + "grace-period-seconds"]);
        await sidecar.Process.WaitForLineAsync($"annotate pod {PodName} works again");
        Assert.Equal(IndependentCheck.StepName(2), IndependentCheck.Latest(dirs.JobDirectory()));
    }

    [Fact]
    public async Task PredictionExceedsGrace_GracePeriodTooShortOnce_NotAgainForTheSameRecommendation()
    {
        using var dirs = new TestDirectories();
        // G = 2 s less a 1.5 s margin leaves 0.5 s; a trainer whose dump takes 0.6 s does not fit, so the
        // recommendation, ceil(p / 0.8 + 1.5), is above 2 s (3 s for a flush of 0.4 s to 1.2 s).
        await using var api = new FakeKubernetesApi(FakeKubernetesApi.Pod(PodName, gracePeriodSeconds: 2));
        await using var sidecar = await StartAsync(dirs, api, intervalSeconds: 1, new() { ["CHECKPOINT_SAFETY_MARGIN_SECONDS"] = "1.5" });
        await using var client = await sidecar.ConnectAsync();
        await sidecar.Process.WaitForLineAsync("Grace period 2 s read from pod");

        await SlowDumpCheckpointAsync(client, 1);
        var advice = await api.WaitForEventAsync("GracePeriodTooShort");
        Assert.Equal("Warning", advice.Type);
        Assert.Equal(api.PodUid, advice.InvolvedObject.Uid);
        var recommended = Regex.Match(advice.Message, @"terminationGracePeriodSeconds to at least (\d+) s").Groups[1].Value;
        Assert.True(int.Parse(recommended, CultureInfo.InvariantCulture) > 2, $"recommended {recommended} s for G = 2 s");
        var first = await api.WaitForPatchAsync(p => p.Annotations.GetValueOrDefault(Step) == "1");
        Assert.Equal(recommended, first.Annotations[Prefix + "recommended-grace-period-seconds"]);
        Assert.True(Number(first.Annotations[Prefix + "predicted-preemption-flush-ratio"]) > 0.25);

        // Another flush predicting the same: the annotations follow, the Event does not repeat. The
        // sidecar decides the Event before the patch that shows the same state.
        await SlowDumpCheckpointAsync(client, 2);
        var second = await api.WaitForPatchAsync(p => p.Annotations.GetValueOrDefault(Step) == "2");
        var secondRecommended = second.Annotations[Prefix + "recommended-grace-period-seconds"];
        if (secondRecommended == recommended)
        {
            // The usual case: the same prediction, no second Event.
            Assert.Single(api.Events, e => e.Reason == "GracePeriodTooShort");
            Assert.Single(sidecar.Process.Lines, l => l.Contains("GracePeriodTooShort:", StringComparison.Ordinal));
        }
        else
        {
            // A loaded machine made the second flush slow enough to change the recommendation: that
            // change, and only it, is told again.
            var events = api.Events.Where(e => e.Reason == "GracePeriodTooShort").ToList();
            Assert.Equal(2, events.Count);
            Assert.Contains($"at least {secondRecommended} s", events[1].Message, StringComparison.Ordinal);
        }
    }

    /// <summary>A trainer whose dump takes 0.6 s: the size of the workload, not a wait for anything.</summary>
    private static async Task SlowDumpCheckpointAsync(CheckpointClient client, long step)
    {
        var dump = await client.BeginCheckpointAsync(step, CheckpointReason.Periodic);
        var files = TrainerFiles.Write(dump, 0, ("model.bin", 4096));
        await Task.Delay(TimeSpan.FromSeconds(0.6));
        await client.CompleteDumpAsync(dump, step, files, null);
        Assert.Equal(CheckpointStatus.Committed, (await client.WaitForCheckpointAsync(dump.CheckpointId)).Status);
    }

    private static Task<SidecarProcess> StartAsync(
        TestDirectories dirs, FakeKubernetesApi api, int intervalSeconds, Dictionary<string, string>? more = null)
    {
        var overrides = new Dictionary<string, string>
        {
            ["CHECKPOINT_KUBERNETES_ENABLED"] = "true",
            ["KUBECONFIG"] = api.WriteKubeconfig(dirs.Root),
            ["POD_NAME"] = PodName,
            ["POD_NAMESPACE"] = "default",
            ["CHECKPOINT_POD_ANNOTATION_INTERVAL_SECONDS"] = intervalSeconds.ToString(CultureInfo.InvariantCulture),
        };
        foreach (var (key, value) in more ?? [])
        {
            overrides[key] = value;
        }

        return SidecarProcess.StartAsync(dirs, overrides: overrides);
    }

    private static double Number(string text) => double.Parse(text, CultureInfo.InvariantCulture);
}
