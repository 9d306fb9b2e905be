using System.Text.Json;
using System.Text.RegularExpressions;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// The trainer is untrusted and shares the staging volume with the sidecar: whatever it does to
/// staging, nothing outside staging reaches a checkpoint, a preemption never crashes the sidecar, and
/// staging is not left to fill up.
/// </summary>
public sealed class HostileStagingTests
{
    [Fact]
    public async Task ReportDump_StagingDirectorySwappedForSymlinkToASecret_RejectedNamingItAndSecretNeverStored()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await SidecarProcess.StartAsync(dirs);
        await using var client = await sidecar.ConnectAsync();
        var dump = await client.BeginCheckpointAsync(5, CheckpointReason.Manual);
        var secrets = Path.Combine(dirs.Root, "secrets");
        var secret = WriteSecret(secrets, "rank-0/model.bin");
        Directory.Delete(dump.StagingDirectory);
        Directory.CreateSymbolicLink(dump.StagingDirectory, secrets);

        var error = await Assert.ThrowsAsync<CheckpointException>(() => client.CompleteDumpAsync(dump, 5, ["rank-0/model.bin"], null));

        Assert.Equal(CheckpointErrorCode.InvalidArgument, error.StatusCode);
        Assert.Contains($"staging directory '{dump.StagingDirectory}'", error.Message, StringComparison.Ordinal);
        Assert.Contains("symlink", error.Message, StringComparison.Ordinal);
        AssertNowhereIn(dirs.Storage, secret);

        // The checkpoint ends when its trainer goes; removing its staging removes the link, not the secrets.
        await client.DisposeAsync();
        await sidecar.Process.WaitForLineAsync($"Checkpoint {dump.CheckpointId} \\(manual\\) failed");
        Assert.False(Path.Exists(dump.StagingDirectory));
        Assert.Equal(secret, await File.ReadAllBytesAsync(Path.Combine(secrets, "rank-0/model.bin")));
        await StopAsync(sidecar);
        AssertNowhereIn(dirs.Storage, secret);
    }

    [Fact]
    public async Task Copy_StagingDirectorySwappedForSymlinkWhileCopying_CommitsWhatWasStagedNeverTheSecret()
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root);
        // One file at a time: the second file is opened only after the swap.
        await using var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint,
            overrides: new Dictionary<string, string> { ["CHECKPOINT_COPY_PARALLELISM"] = "1" });
        await using var client = await sidecar.ConnectAsync();
        var dump = await client.BeginCheckpointAsync(5, CheckpointReason.Manual);
        var files = TrainerFiles.Write(dump, 0, ("first-large.bin", 2 << 20), ("second-small.bin", 4096));
        faultFs.SetRules(new FaultRule("hold-first-file", "write", "*/step-*/*_*/rank-0/first-large.bin", "stall"));
        await client.CompleteDumpAsync(dump, 5, files, null);
        await faultFs.WaitForTriggerAsync("hold-first-file");

        var movedAway = Path.Combine(dirs.Root, "moved-away");
        Directory.Move(dump.StagingDirectory, movedAway);
        var secrets = Path.Combine(dirs.Root, "secrets");
        var secret = WriteSecret(secrets, "rank-0/second-small.bin");
        Directory.CreateSymbolicLink(dump.StagingDirectory, secrets);
        faultFs.ReleaseAll();
        var outcome = await client.WaitForCheckpointAsync(dump.CheckpointId);

        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        var step = IndependentCheck.StepDirectory(TestDirectories.JobDirectory(faultFs.Backing), 5);
        var committed = IndependentCheck.ShardDirectory(step, 0);
        Assert.Equal(
            Path.GetRelativePath(faultFs.Backing, committed),
            Path.GetRelativePath(faultFs.MountPoint, outcome.Directory));
        Assert.Equal(
            await File.ReadAllBytesAsync(Path.Combine(movedAway, "rank-0/second-small.bin")),
            await File.ReadAllBytesAsync(Path.Combine(committed, "rank-0/second-small.bin")));
        IndependentCheck.AssertVerifies(step);
        await sidecar.DetachAsync(client);
        await StopAsync(sidecar);
        AssertNowhereIn(faultFs.Backing, secret);
    }

    /// <remarks>
    /// A report lists up to ~10,000 files; validating them looks each up, which takes seconds on a
    /// large or slow staging volume. The lookup of the one file here is held by the fault-injecting
    /// filesystem: meanwhile the sidecar must go on answering (here: GetStatus, which reads its
    /// trainers under the same lock as reports).
    /// </remarks>
    [Fact]
    public async Task ReportDump_ValidationHeldOnAFile_OtherCallsStillAnswered()
    {
        using var dirs = new TestDirectories();
        await using var staging = await FaultFs.MountAsync(dirs.Root, name: "staging-fs");
        await using var sidecar = await SidecarProcess.StartAsync(dirs,
            overrides: new Dictionary<string, string> { ["CHECKPOINT_STAGING_DIR"] = staging.MountPoint });
        await using var client = await sidecar.ConnectAsync();
        var dump = await client.BeginCheckpointAsync(5, CheckpointReason.Manual);

        // Written beside the mount, so the kernel has nothing of it cached: validation looks it up through faultfs.
        var file = Path.Combine(staging.Backing, dump.CheckpointId, "rank-0", "model.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        await File.WriteAllBytesAsync(file, new byte[64 * 1024]);
        staging.SetRules(new FaultRule("hold-lookup", "getattr", "*/rank-0/model.bin", "stall"));
        var report = client.CompleteDumpAsync(dump, 5, ["rank-0/model.bin"], null);
        await staging.WaitForTriggerAsync("hold-lookup");

        var status = await client.GetStatusAsync().WaitAsync(ObservedProcess.DefaultTimeout);
        Assert.Equal([0], status.Trainers.Select(t => t.Rank));
        Assert.False(report.IsCompleted, "the report is still being validated");

        staging.ReleaseAll();
        await report;
        Assert.Equal(CheckpointStatus.Committed, (await client.WaitForCheckpointAsync(dump.CheckpointId)).Status);
    }

    [Theory]
    [InlineData("EROFS", "the file system is mounted read-only (EROFS)")]
    [InlineData("ENOSPC", "no space is left on the device (ENOSPC)")]
    public async Task Sigterm_StagingDirectoryCannotBeCreated_FailedFlushWithItsCauseAndExitOne(string errno, string cause)
    {
        using var dirs = new TestDirectories();
        await using var staging = await FaultFs.MountAsync(dirs.Root, name: "staging-fs");
        staging.SetRules(new FaultRule("no-mkdir", "mkdir", "*", "errno", Once: false, Errno: errno));
        await using var sidecar = await SidecarProcess.StartAsync(dirs,
            overrides: new Dictionary<string, string> { ["CHECKPOINT_STAGING_DIR"] = staging.MountPoint });
        await using var client = await sidecar.ConnectAsync();

        sidecar.Process.Signal(Posix.SigTerm);

        var failed = await sidecar.Process.WaitForLineAsync(
            $@"Checkpoint (\S+) \(preemption\) failed \(storage_error\): could not create the staging directory '{Regex.Escape(staging.MountPoint)}/\S+': {Regex.Escape(cause)}");
        var checkpointId = failed.Groups[1].Value;
        var metrics = await sidecar.ScrapeMetricsAsync();
        Assert.Equal(1, MetricsExposition.Value(metrics, "checkpoint_flush_failures_total{cause=\"storage_error\"}"));
        await client.DisposeAsync();
        Assert.Equal(1, await sidecar.Process.WaitForExitAsync());
        await sidecar.Process.WaitForLineAsync("Stopping after the preemption flush: Failed");

        var record = Assert.Single(Directory.GetFiles(Path.Combine(dirs.JobDirectory(), "flush-records"), "*.json"));
        using var json = JsonDocument.Parse(await File.ReadAllBytesAsync(record));
        Assert.Equal(checkpointId, json.RootElement.GetProperty("checkpointId").GetString());
        Assert.Equal("failed", json.RootElement.GetProperty("outcome").GetString());
        Assert.Equal("storage_error", json.RootElement.GetProperty("failureCause").GetString());
        Assert.Contains(cause, json.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_StagingLeftByASigkilledSidecar_IsSweptAndNothingElse()
    {
        using var dirs = new TestDirectories();
        string leftover;
        await using (var sidecar = await SidecarProcess.StartAsync(dirs))
        {
            await using var client = await sidecar.ConnectAsync();
            var dump = await client.BeginCheckpointAsync(5, CheckpointReason.Periodic);
            TrainerFiles.Write(dump, 0, ("model.bin", 1 << 20));
            leftover = dump.StagingDirectory;

            sidecar.Process.Signal(Posix.SigKill);
            Assert.Equal(128 + Posix.SigKill, await sidecar.Process.WaitForExitAsync());
        }

        Assert.True(Directory.Exists(leftover));
        var notes = Path.Combine(dirs.Staging, "notes", "keep.txt");
        Directory.CreateDirectory(Path.GetDirectoryName(notes)!);
        await File.WriteAllTextAsync(notes, "not the sidecar's");

        await using (var next = await SidecarProcess.StartAsync(dirs))
        {
            Assert.False(Path.Exists(leftover));
            Assert.True(File.Exists(notes));
            await next.Process.WaitForLineAsync($"Swept leftover directory {Regex.Escape(leftover)}");
        }
    }

    /// <summary>
    /// Stops a sidecar that has no trainer attached (nothing to flush; see <see cref="SidecarProcess.DetachAsync"/>), so storage can be read
    /// whole: its flush records are written in the background, locked while they are.
    /// </summary>
    private static async Task StopAsync(SidecarProcess sidecar)
    {
        sidecar.Process.Signal(Posix.SigTerm);
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync());
    }

    private static byte[] WriteSecret(string directory, string relative)
    {
        var path = Path.Combine(directory, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var secret = System.Text.Encoding.ASCII.GetBytes($"SECRET-{Guid.NewGuid():N}-".PadRight(4096, 'x'));
        File.WriteAllBytes(path, secret);
        return secret;
    }

    /// <summary>No file under <paramref name="root"/> holds <paramref name="secret"/>'s bytes.</summary>
    private static void AssertNowhereIn(string root, byte[] secret)
    {
        foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
        {
            var bytes = File.ReadAllBytes(file);
            Assert.True(bytes.AsSpan().IndexOf(secret.AsSpan(0, 48)) < 0, $"{file} holds the secret");
        }
    }
}
