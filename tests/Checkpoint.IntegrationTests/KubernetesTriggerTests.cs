using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;
using k8s.Models;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// The sidecar against a fake Kubernetes API server speaking real Kubernetes JSON (no API server
/// can run on these machines): G from the pod spec, the pod watch as a termination trigger with the
/// kubelet's deadline and the scheduler's cause, Events on the pod, and life without the API.
/// </summary>
public sealed class KubernetesTriggerTests
{
    private const string PodName = "train-0-abcde";

    [Fact]
    public async Task PodSpec_GracePeriod_IsPlannedAgainst()
    {
        using var dirs = new TestDirectories();
        await using var api = new FakeKubernetesApi(FakeKubernetesApi.Pod(PodName, gracePeriodSeconds: 45));
        await using var sidecar = await StartAsync(dirs, api);

        await sidecar.Process.WaitForLineAsync("Grace period 45 s read from pod default/" + PodName);
        Assert.Equal("45", MetricsExposition.Text(await sidecar.ScrapeMetricsAsync(), "checkpoint_grace_period_seconds"));
    }

    [Fact]
    public async Task PodWatch_DeletionAndDisruptionTarget_FlushWithKubeletDeadlineAndCause()
    {
        using var dirs = new TestDirectories();
        await using var api = new FakeKubernetesApi(FakeKubernetesApi.Pod(PodName, gracePeriodSeconds: 40));
        await using var sidecar = await StartAsync(dirs, api);
        await using var client = await sidecar.ConnectAsync();
        await api.Watching;

        // As the scheduler does: mark the pod, then delete it with its grace period.
        var deletion = DateTime.UtcNow.AddSeconds(25);
        deletion = new DateTime(deletion.Ticks - (deletion.Ticks % TimeSpan.TicksPerSecond), DateTimeKind.Utc);
        await api.ModifyAsync(pod =>
        {
            pod.Status.Conditions.Add(new V1PodCondition
            {
                Type = "DisruptionTarget",
                Status = "True",
                Reason = "PreemptionByScheduler",
                Message = "Preempted in order to admit critical pod",
            });
            pod.Metadata.DeletionTimestamp = deletion;
            pod.Metadata.DeletionGracePeriodSeconds = 40;
        });

        await sidecar.Process.WaitForLineAsync($"Pod {PodName} is terminating: .*PreemptionByScheduler");
        var dump = await MultiRankTests.DumpRequestAsync(client);
        Assert.Equal(CheckpointReason.Preemption, dump.Reason);
        // Deadline: the kubelet's SIGKILL time minus the 1 s safety margin, not "now + G".
        Assert.Equal(new DateTimeOffset(deletion).AddSeconds(-1), dump.Deadline);

        var started = await api.WaitForEventAsync("CheckpointFlushStarted");
        Assert.Contains("PreemptionByScheduler", started.Message, StringComparison.Ordinal);
        Assert.Equal(api.PodUid, started.InvolvedObject.Uid);
        Assert.Equal("Pod", started.InvolvedObject.Kind);

        await client.CompleteDumpAsync(dump, 12, TrainerFiles.Write(dump, 0, ("model.bin", 1 << 20)), null);
        var outcome = await client.WaitForCheckpointAsync(dump.CheckpointId);
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);

        var committed = await api.WaitForEventAsync("CheckpointCommitted");
        Assert.Equal("Normal", committed.Type);
        Assert.Contains(dump.CheckpointId, committed.Message, StringComparison.Ordinal);
        Assert.Matches(@"total [\d.]+ s of 40 s grace \(budget ratio [\d.]+\)", committed.Message);

        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Equal("1", MetricsExposition.Text(metrics, "checkpoint_preemptions_total{cause=\"PreemptionByScheduler\"}"));

        // The SIGTERM that follows joins the finished flush: no second checkpoint, a clean exit.
        sidecar.Process.Signal(Posix.SigTerm);
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        Assert.Equal([IndependentCheck.StepName(12)], Directory.GetDirectories(dirs.JobDirectory(), "step-*").Select(Path.GetFileName));
        var step = IndependentCheck.StepDirectory(dirs.JobDirectory(), 12);
        IndependentCheck.AssertVerifies(step);
        Assert.Single(IndependentCheck.SealedShards(step));
        Assert.Equal([IndependentCheck.ShardDirectory(step, 0)], Directory.GetDirectories(step).Where(d => Path.GetFileName(d) != "shards"));
        Assert.Equal(IndependentCheck.ShardDirectory(step, 0), outcome.Directory);

        // The flush record is written in the background after the outcome; it must be on storage by
        // the time the sidecar has exited, because it is what outlives the pod.
        var record = Assert.Single(Directory.GetFiles(Path.Combine(dirs.JobDirectory(), "flush-records"), "*.json"));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(record));
        Assert.Equal("PreemptionByScheduler", json.RootElement.GetProperty("cause").GetString());
        Assert.Equal(PodName, json.RootElement.GetProperty("pod").GetString());
        Assert.Equal("committed", json.RootElement.GetProperty("outcome").GetString());
    }

    [Fact]
    public async Task ApiUnreachable_SaysSoOnce_AndSigtermStillFlushes()
    {
        using var dirs = new TestDirectories();
        string kubeconfig;
        await using (var gone = new FakeKubernetesApi(FakeKubernetesApi.Pod(PodName, 40)))
        {
            // Its port is closed once disposed: an API server that cannot be reached.
            kubeconfig = gone.WriteKubeconfig(dirs.Root);
        }

        await using var sidecar = await SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_KUBERNETES_ENABLED"] = "true",
            ["KUBECONFIG"] = kubeconfig,
            ["POD_NAME"] = PodName,
        });
        await sidecar.Process.WaitForLineAsync($"Kubernetes API unreachable for pod default/{PodName}");
        await using var client = await sidecar.ConnectAsync();

        sidecar.Process.Signal(Posix.SigTerm);
        var dump = await MultiRankTests.DumpRequestAsync(client);
        var outcome = client.WaitForCheckpointAsync(dump.CheckpointId);
        await client.CompleteDumpAsync(dump, 3, TrainerFiles.Write(dump, 0, ("model.bin", 4096)), null);
        Assert.Equal(CheckpointStatus.Committed, (await outcome).Status);
        await client.DisposeAsync();
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
        Assert.Equal(1, sidecar.Process.Lines.Count(l => l.Contains("Kubernetes API unreachable", StringComparison.Ordinal)));
        Assert.Equal(IndependentCheck.StepName(3), IndependentCheck.Latest(dirs.JobDirectory()));
        IndependentCheck.AssertVerifies(IndependentCheck.StepDirectory(dirs.JobDirectory(), 3));
    }

    private static Task<SidecarProcess> StartAsync(TestDirectories dirs, FakeKubernetesApi api) =>
        SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_KUBERNETES_ENABLED"] = "true",
            ["KUBECONFIG"] = api.WriteKubeconfig(dirs.Root),
            ["POD_NAME"] = PodName,
            ["POD_NAMESPACE"] = "default",
        });
}
