using System.Text.Json;
using System.Text.RegularExpressions;
using Checkpoint.IntegrationTests.Infrastructure;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// `checkpoint-sidecar drill` against the real sidecar and a real trainer process: a preemption flush
/// rehearsed on a live job, committed, reported, and nothing stops.
/// </summary>
public sealed class DrillTests
{
    [Fact]
    public async Task Drill_LiveTrainer_CommitsMarkedCheckpointReportsPhasesAndTrainingContinues()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var trainer = ObservedProcess.Start("sample-trainer", "dotnet",
            [RepoPaths.SampleTrainerDll, "--steps", "1000000", "--checkpoint-every", "50", "--step-delay-ms", "5", "--payload-bytes", "1048576"],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = sidecar.SocketPath });
        await trainer.WaitForLineAsync(@"^step 10 ");

        await using var drill = StartDrill(dirs);
        Assert.Equal(0, await drill.WaitForExitAsync());
        var id = (await drill.WaitForLineAsync(@"^preemption drill (\S+): committed at step (\d+)")).Groups[1].Value;
        foreach (var phase in new[] { "budget", "notify", "dump", "copy", "verify", "commit", "total", "margin" })
        {
            Assert.Matches($@"(?m)^  {phase} +\d+\.\d{{3}} s", drill.Output);
        }

        Assert.Contains("a real preemption now would fit", drill.Output, StringComparison.Ordinal);
        await sidecar.Process.WaitForLineAsync($@"Checkpoint {Regex.Escape(id)} \(drill, step \d+\) committed");

        // The trainer dumped the drill (the C# SDK's DumpRequest.Drill tells it so) and carries on: it takes (and the sidecar commits) a periodic checkpoint after it.
        await trainer.WaitForLineAsync($@"^checkpoint {Regex.Escape(id)} written at step \d+ \(drill\)");
        var next = await trainer.WaitForLineAsync(@"^checkpoint (\S+-periodic-\S+) written at step \d+ \(periodic\)", TimeSpan.FromSeconds(60));
        await sidecar.Process.WaitForLineAsync($@"Checkpoint {Regex.Escape(next.Groups[1].Value)} \(periodic, step \d+\) committed");
        Assert.False(trainer.HasExited, "a drill must not end the trainer");
        Assert.False(sidecar.Process.HasExited, "a drill must not end the sidecar");

        // The flush record says it was a drill, and the metrics do not count it as a preemption.
        var record = await WaitForRecordAsync(dirs, id);
        Assert.True(record.GetProperty("drill").GetBoolean());
        Assert.Equal("preemption", record.GetProperty("reason").GetString());
        Assert.Equal("committed", record.GetProperty("outcome").GetString());
        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Contains("checkpoint_preemption_drills_total{result=\"fits\"} 1", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain("checkpoint_preemptions_total{", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Drill_GraceTooShortForTheDump_ExitsOneSayingItWouldNotFit()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = "2",
            ["CHECKPOINT_SAFETY_MARGIN_SECONDS"] = "1",
        });
        // Attached, but dumps nothing before the deadline: a dump longer than the budget.
        await using var client = await sidecar.ConnectAsync();

        await using var drill = StartDrill(dirs, "--json");
        Assert.Equal(1, await drill.WaitForExitAsync());
        using var report = JsonDocument.Parse(drill.Output[drill.Output.IndexOf('{', StringComparison.Ordinal)..]);
        Assert.False(report.RootElement.GetProperty("fits").GetBoolean());
        Assert.Equal("failed", report.RootElement.GetProperty("outcome").GetString());
        Assert.Equal(1.0, report.RootElement.GetProperty("budgetSeconds").GetDouble(), 3);
        Assert.Contains("deadline", report.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.True(report.RootElement.GetProperty("marginSeconds").GetDouble() <= 0);
        Assert.False(sidecar.Process.HasExited, "a failed drill must not end the sidecar");

        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Contains("checkpoint_preemption_drills_total{result=\"would_not_fit\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("checkpoint_deadline_misses_total 0", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Drill_NoTrainerAttached_FailsWithAClearError()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);

        await using var drill = StartDrill(dirs);
        Assert.Equal(1, await drill.WaitForExitAsync());
        Assert.Contains("not started: no trainer is attached", drill.Output, StringComparison.Ordinal);
        Assert.False(sidecar.Process.HasExited);
    }

    [Fact]
    public async Task Drill_UnknownArgument_IsAUsageError()
    {
        using var dirs = new TestDirectories();
        await using var drill = StartDrill(dirs, "--now");
        Assert.Equal(2, await drill.WaitForExitAsync());
        Assert.Contains("usage: checkpoint-sidecar drill", drill.Output, StringComparison.Ordinal);
    }

    private static async Task<JsonElement> WaitForRecordAsync(TestDirectories dirs, string checkpointId)
    {
        // Records are written in the background after the outcome (temp file, then renamed into place);
        // the drill's is found by its id, looked for again each time a record lands.
        var folder = Directory.CreateDirectory(Path.Combine(dirs.JobDirectory(), "flush-records")).FullName;
        var landed = new SemaphoreSlim(0);
        using var watcher = new FileSystemWatcher(folder, "*.json") { EnableRaisingEvents = true };
        watcher.Renamed += (_, _) => landed.Release();
        watcher.Created += (_, _) => landed.Release();
        using var cancel = new CancellationTokenSource(ObservedProcess.DefaultTimeout);
        while (true)
        {
            foreach (var file in Directory.GetFiles(folder, "*.json"))
            {
                using var document = JsonDocument.Parse(await File.ReadAllTextAsync(file, cancel.Token));
                if (document.RootElement.GetProperty("checkpointId").GetString() == checkpointId)
                {
                    return document.RootElement.Clone();
                }
            }

            await landed.WaitAsync(cancel.Token);
        }
    }

    private static ObservedProcess StartDrill(TestDirectories dirs, params string[] args) =>
        ObservedProcess.Start("drill", RepoPaths.SidecarBinary, ["drill", .. args],
            new Dictionary<string, string> { ["CHECKPOINT_SOCKET_PATH"] = dirs.SocketPath });
}
