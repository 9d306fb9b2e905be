using System.Globalization;
using System.Text.Json.Nodes;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// The sidecar started on a job exports the Young/Daly checkpoint interval computed from the flush
/// records the job's earlier pods left on the shared storage.
/// </summary>
public sealed class CheckpointIntervalTests
{
    [Fact]
    public async Task RecordsOfSeveralPods_SidecarExportsYoungDalyIntervalAndItsInputs()
    {
        using var dirs = new TestDirectories();
        var records = Directory.CreateDirectory(Path.Combine(dirs.JobDirectory(), "flush-records")).FullName;
        var now = DateTimeOffset.UtcNow;
        // 12 h of a two-pod job: a periodic checkpoint every 30 min stalling the slower pod 1 + 29 s,
        // and two preemptions, each recorded by both pods: MTBF 6 h, sqrt(2 * 30 * 21600) = 1138.4 s.
        for (var i = 0; i < 24; i++)
        {
            var at = now.AddHours(-12).AddMinutes(30 * i);
            WriteRecord(records, $"periodic-{i}", "job-pod-0", "periodic", at, notify: 1, dump: 25);
            WriteRecord(records, $"periodic-{i}", "job-pod-1", "periodic", at.AddSeconds(0.3), notify: 1, dump: 29);
        }

        foreach (var hoursAgo in new[] { 8, 4 })
        {
            var at = now.AddHours(-hoursAgo).AddMinutes(10);
            WriteRecord(records, $"preemption-{hoursAgo}", "job-pod-0", "preemption", at, notify: 0.1, dump: 2);
            WriteRecord(records, $"preemption-{hoursAgo}", "job-pod-1", "preemption", at.AddSeconds(3), notify: 0.1, dump: 2);
        }

        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        var logged = await sidecar.Process.WaitForLineAsync(@"Recommended checkpoint interval (\d+) s \(Young/Daly: periodic checkpoint cost 30\.00 s, MTBF (\d+) s from 2 preemptions");
        Assert.InRange(int.Parse(logged.Groups[1].Value, CultureInfo.InvariantCulture), 1138, 1140);

        var metrics = await sidecar.ScrapeMetricsAsync();
        // The span runs from the oldest record to now, which moves on by the seconds this test takes.
        Assert.InRange(MetricsExposition.Value(metrics, "checkpoint_observed_mtbf_seconds"), 21600, 21600 + 60);
        Assert.InRange(MetricsExposition.Value(metrics, "checkpoint_recommended_interval_seconds"), 1138.4, 1138.4 + 2);
        Assert.Equal(30, MetricsExposition.Value(metrics, "checkpoint_periodic_cost_seconds"), 6);
        Assert.Equal(1800, MetricsExposition.Value(metrics, "checkpoint_observed_periodic_interval_seconds"), 3);
        Assert.Equal(2, MetricsExposition.Value(metrics, "checkpoint_observed_preemptions"));

        // The trainer is told it too (what an SDK's checkpoint_every="auto" follows): on attaching, and with each outcome.
        await using var client = await sidecar.ConnectAsync();
        Assert.InRange(client.RecommendedInterval!.Value.TotalSeconds, 1138.4, 1138.4 + 2);
        var dump = await client.BeginCheckpointAsync(10, CheckpointReason.Periodic);
        await client.CompleteDumpAsync(dump, 10, TrainerFiles.Write(dump, 0, ("model.bin", 4096)), null);
        var outcome = await client.WaitForCheckpointAsync(dump.CheckpointId);
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        // This pod's own checkpoint is one cheap cost sample of nine: the median, and so the interval, stays.
        Assert.InRange(outcome.RecommendedInterval!.Value.TotalSeconds, 1138.4, 1138.4 + 2);
    }

    [Fact]
    public async Task NoRecords_TrainerIsToldNoRecommendation()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        Assert.Null(client.RecommendedInterval);

        var dump = await client.BeginCheckpointAsync(10, CheckpointReason.Periodic);
        await client.CompleteDumpAsync(dump, 10, TrainerFiles.Write(dump, 0, ("model.bin", 4096)), null);
        var outcome = await client.WaitForCheckpointAsync(dump.CheckpointId);

        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        Assert.Null(outcome.RecommendedInterval);
        Assert.Null(client.RecommendedInterval);
    }

    /// <summary>Writes a record as the sidecar's FlushRecordStore does: the published JSON format, named by end time and id.</summary>
    private static void WriteRecord(string directory, string id, string pod, string reason, DateTimeOffset triggeredAt, double notify, double dump)
    {
        var total = notify + dump + 6;
        var endedAt = triggeredAt.AddSeconds(total);
        var record = new JsonObject
        {
            ["formatVersion"] = 1,
            ["checkpointId"] = id,
            ["pod"] = pod,
            ["reason"] = reason,
            ["outcome"] = "committed",
            ["step"] = 100,
            ["triggeredAt"] = triggeredAt.ToString("O", CultureInfo.InvariantCulture),
            ["endedAt"] = endedAt.ToString("O", CultureInfo.InvariantCulture),
            ["gracePeriodSeconds"] = 30,
            ["deadlineMissed"] = false,
            ["timings"] = new JsonObject
            {
                ["notifySeconds"] = notify,
                ["dumpSeconds"] = dump,
                ["copySeconds"] = 4,
                ["verifySeconds"] = 1,
                ["commitSeconds"] = 1,
                ["totalSeconds"] = total,
                ["budgetUsedRatio"] = total / 30,
                ["bytes"] = 1 << 30,
                ["commitWaitSeconds"] = 0.5,
            },
        };
        var name = $"{endedAt.UtcDateTime:yyyyMMdd'T'HHmmssfff'Z'}-{id}.json";
        File.WriteAllText(Path.Combine(directory, name), record.ToJsonString());
    }
}
