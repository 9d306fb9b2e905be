using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// Storage content is untrusted (another pod, another job, a person, a broken server wrote it): the
/// real sidecar, started on a job directory seeded with hostile entries, starts, serves, and hands a
/// resuming trainer the older checkpoint that is valid.
/// </summary>
public sealed class HostileStorageTests
{
    /// <summary>Sorts after any step the test's sidecar makes, so it is the first candidate tried.</summary>
    private const long NewerStep = 999_999_999;

    /// <summary>A flush record's checkpoint id that sorts after any the test's sidecar makes.</summary>
    private const string NewerId = "29991231T235959999Z-preemption";

    [Fact]
    public async Task HostileEntriesOnStorage_SidecarStartsServesAndResumesFromOlderValidCheckpoint()
    {
        using var dirs = new TestDirectories();
        var job = dirs.JobDirectory();
        string older;
        await using (var first = await SidecarProcess.StartAsync(dirs))
        {
            var client = await first.ConnectAsync();
            var outcome = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 1 << 20));
            Assert.Equal(CheckpointStatus.Committed, outcome.Status);
            older = outcome.CheckpointId;
            await first.DetachAsync(client);

            // A clean stop, so the flush record of that checkpoint is on storage before it is seeded.
            first.Process.Signal(Posix.SigTerm);
            Assert.Equal(0, await first.Process.WaitForExitAsync());
        }

        var olderStep = IndependentCheck.StepDirectory(job, 10);
        IndependentCheck.AssertVerifies(olderStep);

        // The newest "checkpoint" is a symlink to a perfect copy of the step outside the job directory.
        var newerName = IndependentCheck.StepName(NewerStep);
        var outside = Path.Combine(dirs.Root, "elsewhere", newerName);
        CopyDirectory(olderStep, outside);
        var manifestPath = Path.Combine(outside, "manifest.json");
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(manifestPath))!;
        manifest["id"] = newerName;
        manifest["step"] = NewerStep;
        foreach (var shard in manifest["shards"]!.AsArray())
        {
            shard!["step"] = NewerStep;
        }

        await File.WriteAllTextAsync(manifestPath, manifest.ToJsonString());
        IndependentCheck.AssertVerifies(outside);
        Directory.CreateSymbolicLink(Path.Combine(job, newerName), outside);
        // LATEST is a FIFO: reading it the ordinary way blocks forever.
        File.Delete(Path.Combine(job, "LATEST"));
        Posix.MakeFifo(Path.Combine(job, "LATEST"));
        // The two newest flush records: a copy that took 1e13 s (no TimeSpan holds it), and a FIFO.
        var records = Path.Combine(job, "flush-records");
        var genuineRecord = Directory.EnumerateFiles(records, $"*-{older}.json").Single();
        await File.WriteAllTextAsync(
            Path.Combine(records, $"29991231T235959998Z-{NewerId}.json"),
            Regex.Replace(await File.ReadAllTextAsync(genuineRecord), "\"copySeconds\": [^,]+", "\"copySeconds\": 1e13")
                .Replace(older, NewerId, StringComparison.Ordinal));
        Posix.MakeFifo(Path.Combine(records, "29991231T235959999Z-fifo.json"));
        // Leftovers of flushes killed half-way, each holding a file name that is not UTF-8: a step newer
        // than the valid one but never committed (no job manifest), a step retention was removing, and
        // the temporary directory of a sidecar from before job-wide checkpoints.
        var uncommitted = Path.Combine(job, IndependentCheck.StepName(11));
        var uncommittedShard = Directory.CreateDirectory(Path.Combine(uncommitted, "other-pod_0badc0de", "rank-0")).FullName;
        Posix.CreateFileWithRawName(uncommittedShard, [0xff, 0xfe, (byte)'.', (byte)'b', (byte)'i', (byte)'n']);
        var deleting = Directory.CreateDirectory(Path.Combine(job, IndependentCheck.StepName(5) + ".deleting")).FullName;
        Posix.CreateFileWithRawName(deleting, [0xff, 0xfe, (byte)'.', (byte)'b', (byte)'i', (byte)'n']);
        var partial = Directory.CreateDirectory(Path.Combine(job, "20200101T000000000Z-periodic.partial")).FullName;
        Posix.CreateFileWithRawName(partial, [0xff, 0xfe, (byte)'.', (byte)'b', (byte)'i', (byte)'n']);

        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await sidecar.Process.WaitForLineAsync($"previous flush of this job \\({Regex.Escape(older)},");
        Assert.False(Directory.Exists(deleting));
        Assert.False(Directory.Exists(partial));
        await using var trainer = await sidecar.ConnectAsync();

        var latest = await trainer.GetLatestCheckpointAsync();

        Assert.NotNull(latest);
        Assert.Equal(IndependentCheck.StepName(10), latest.Id);
        Assert.Equal(10, latest.Step);
        Assert.Equal(IndependentCheck.ShardDirectory(olderStep, 0), latest.Directory);
        IndependentCheck.AssertVerifies(olderStep);
        var retired = sidecar.Process.WaitForLineAsync($"Retention removed checkpoint {IndependentCheck.StepName(11)}");
        var next = await TrainerFiles.CheckpointAsync(trainer, 20, 0, ("model.bin", 1 << 20));
        Assert.Equal(CheckpointStatus.Committed, next.Status);
        Assert.Equal(IndependentCheck.StepName(20), IndependentCheck.Latest(job));
        IndependentCheck.AssertVerifies(IndependentCheck.StepDirectory(job, 20));
        // The commit of a newer step retires the uncommitted one (after telling the trainer: the log
        // line says when); nothing outside the job directory is touched.
        await retired;
        Assert.False(Directory.Exists(uncommitted));
        IndependentCheck.AssertVerifies(outside);
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var copy = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
            File.Copy(file, copy);
        }
    }
}
