using System.Globalization;
using System.Text.Json.Nodes;
using Checkpoint.IntegrationTests.Infrastructure;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// Budget-aware verification on the published sidecar: a preemption-class flush (a drill) whose
/// read-back the planner predicts will not fit before the deadline commits on the write-side hash,
/// and says so in the manifest, the log and the metrics.
/// </summary>
public sealed class ReadBackBudgetTests
{
    [Fact]
    public async Task Drill_ReadBackTooSlowForTheDeadline_CommitsOnTheWriteHash_RecordsAndCountsIt()
    {
        using var dirs = new TestDirectories();
        // The previous pod's flush read 1 GiB back in a day: 12 KB/s, so this flush's 1 MiB would take
        // about 85 s of a 28 s budget, while its copy (1 GiB in 4 s) fits easily.
        var records = Directory.CreateDirectory(Path.Combine(dirs.JobDirectory(), "flush-records")).FullName;
        WritePreviousPodsRecord(records, verifySeconds: 86_400);
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var trainer = ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "1000000", "--checkpoint-every", "0", "--step-delay-ms", "5", "--payload-bytes", "1048576"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = sidecar.SocketPath });
        await trainer.WaitForLineAsync(@"^step 10 ");

        await using var drill = ObservedProcess.Start("drill", RepoPaths.SidecarBinary, ["drill"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = dirs.SocketPath });
        await drill.WaitForExitAsync();
        var committed = await drill.WaitForLineAsync(@"^preemption drill (\S+): committed at step (\d+)");
        var step = long.Parse(committed.Groups[2].Value, CultureInfo.InvariantCulture);

        // Every file of the checkpoint says how it was verified: the 1 MiB payload was not read back
        // (small files beside it may still fit; the decision is per file).
        var stepDirectory = IndependentCheck.StepDirectory(dirs.JobDirectory(), step);
        using var manifest = IndependentCheck.Manifest(stepDirectory);
        var files = manifest.RootElement.GetProperty("shards").EnumerateArray().SelectMany(s => s.GetProperty("files").EnumerateArray())
            .Select(f => (Size: f.GetProperty("size").GetInt64(), Verification: f.GetProperty("verification").GetString())).ToList();
        Assert.All(files, f => Assert.True(f.Verification is "read-back" or "write-hash", f.Verification));
        Assert.Equal("write-hash", files.MaxBy(f => f.Size).Verification);
        IndependentCheck.AssertVerifies(stepDirectory);

        await sidecar.Process.WaitForLineAsync(@"committed on their write-side hash and fsync without a read-back");
        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Equal(files.Where(f => f.Verification == "write-hash").Sum(f => f.Size),
            MetricsExposition.Value(metrics, "checkpoint_verified_bytes_total{mode=\"write-hash\"}"));
        Assert.Equal(files.Where(f => f.Verification == "read-back").Sum(f => f.Size),
            MetricsExposition.Value(metrics, "checkpoint_verified_bytes_total{mode=\"read-back\"}"));
    }

    /// <summary>A committed preemption flush of a previous pod, in the published record format, as FlushRecordStore writes it.</summary>
    private static void WritePreviousPodsRecord(string directory, double verifySeconds)
    {
        var triggeredAt = DateTimeOffset.UtcNow.AddHours(-1);
        var total = 4 + verifySeconds + 1;
        var endedAt = triggeredAt.AddSeconds(total);
        var record = new JsonObject
        {
            ["formatVersion"] = 1,
            ["checkpointId"] = "previous-periodic",
            ["pod"] = "job-pod-previous",
            ["reason"] = "periodic",
            ["outcome"] = "committed",
            ["step"] = 5,
            ["triggeredAt"] = triggeredAt.ToString("O", CultureInfo.InvariantCulture),
            ["endedAt"] = endedAt.ToString("O", CultureInfo.InvariantCulture),
            ["gracePeriodSeconds"] = 30,
            ["deadlineMissed"] = false,
            ["timings"] = new JsonObject
            {
                ["notifySeconds"] = 0,
                ["dumpSeconds"] = 0,
                ["copySeconds"] = 4,
                ["verifySeconds"] = verifySeconds,
                ["commitSeconds"] = 1,
                ["totalSeconds"] = total,
                ["budgetUsedRatio"] = total / 30,
                ["bytes"] = 1 << 30,
            },
        };
        var name = $"{endedAt.UtcDateTime:yyyyMMdd'T'HHmmssfff'Z'}-previous-periodic.json";
        File.WriteAllText(Path.Combine(directory, name), record.ToJsonString());
    }
}
