using System.Diagnostics;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// A hung NFS server: a write or an fsync of the preemption checkpoint blocks past the deadline
/// (held by the fault-injecting filesystem until the test releases it). The deadline alone must fail
/// the flush: the trainers learn it, the metrics count the miss while the call is still blocked, the
/// flush record is written, and the sidecar exits before SIGKILL would come.
/// </summary>
public sealed class StalledStorageTests
{
    private const int GraceSeconds = 8;
    private const int MarginSeconds = 2;

    [Theory]
    [InlineData("write", 1L << 20)]
    [InlineData("fsync", null)]
    public async Task StorageHangsPastDeadline_FlushFailsAtTheDeadline_MissCounted_ExitBeforeGrace(string op, long? afterBytes)
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root);
        await using var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = GraceSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["CHECKPOINT_SAFETY_MARGIN_SECONDS"] = MarginSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        var client = await sidecar.ConnectAsync();
        var job = TestDirectories.JobDirectory(faultFs.Backing);
        faultFs.SetRules(new FaultRule("hang", op, "*/step-*/*_*/rank-0/model.bin", "stall", AfterBytes: afterBytes));

        var sigterm = Stopwatch.StartNew();
        sidecar.Process.Signal(Posix.SigTerm);
        var dump = await MultiRankTests.DumpRequestAsync(client);
        var waiting = client.WaitForCheckpointAsync(dump.CheckpointId);
        await client.CompleteDumpAsync(dump, 5, TrainerFiles.Write(dump, 0, ("model.bin", 4 << 20)), null);
        await faultFs.WaitForTriggerAsync("hang");

        // Storage is still hung: the outcome must come from the deadline, not from the blocked call.
        CheckpointOutcome outcome;
        try
        {
            outcome = await waiting.WaitAsync(TimeSpan.FromSeconds(GraceSeconds * 2));
        }
        catch (Exception e) when (e is CheckpointException or TimeoutException)
        {
            throw new InvalidOperationException($"no outcome reached the trainer: {e.Message}\nSidecar output:\n{sidecar.Process.Output}", e);
        }

        var toldAfter = sigterm.Elapsed;
        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Contains("deadline", outcome.Error, StringComparison.OrdinalIgnoreCase);
        Assert.True(toldAfter < TimeSpan.FromSeconds(GraceSeconds), $"the trainer learned the outcome {toldAfter.TotalSeconds:F1} s after SIGTERM, past the grace period");

        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Equal(1, MetricsExposition.Value(metrics, "checkpoint_deadline_misses_total"));
        Assert.Equal(1, MetricsExposition.Value(metrics, "checkpoint_flushes_total{reason=\"preemption\",outcome=\"failed\"}"));
        Assert.Equal(1, MetricsExposition.Value(metrics, "checkpoint_last_flush_deadline_missed"));

        // The trainer exits once it knows; the sidecar must follow before SIGKILL, storage still hung.
        await client.DisposeAsync();
        Assert.Equal(1, await sidecar.Process.WaitForExitAsync(TimeSpan.FromSeconds(GraceSeconds * 2)));
        var exitedAfter = sigterm.Elapsed;
        Assert.True(exitedAfter < TimeSpan.FromSeconds(GraceSeconds), $"the sidecar exited {exitedAfter.TotalSeconds:F1} s after SIGTERM, past the grace period");

        // The record goes to flush-records/, which the hang does not touch.
        var record = Assert.Single(Directory.GetFiles(Path.Combine(job, "flush-records"), "*.json"));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(record));
        Assert.Equal("failed", json.RootElement.GetProperty("outcome").GetString());
        Assert.Equal("deadline_exceeded", json.RootElement.GetProperty("failureCause").GetString());
        Assert.True(json.RootElement.GetProperty("deadlineMissed").GetBoolean());

        faultFs.ReleaseAll();
        Assert.Null(IndependentCheck.Latest(job));
        Assert.False(IndependentCheck.IsCommitted(IndependentCheck.StepDirectory(job, 5)));
    }
}
