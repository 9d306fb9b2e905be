using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// SIGKILL of the sidecar at several points of a flush, held there by the fault-injecting
/// filesystem the storage is mounted through. After a restart the previous checkpoint must still be
/// LATEST and still verify, and the partial directory must be gone and never returned.
/// </summary>
public sealed class CrashRecoveryTests
{
    public static TheoryData<string, string, string, long?> KillPoints => new()
    {
        // point name, faultfs op, path glob, bytes written before the stall
        { "while-copying-data", "write", "*.partial/rank-0/model.bin", 1 << 20 },
        { "at-file-fsync", "fsync", "*.partial/rank-0/model.bin", null },
        { "writing-manifest", "create", "*.partial/manifest.json", null },
        { "renaming-partial", "rename", "*.partial", null },
        { "moving-latest", "create", "*/LATEST.tmp", null },
    };

    [Theory]
    [MemberData(nameof(KillPoints))]
    public async Task SigkillDuringFlush_AfterRestart_PreviousCheckpointStaysLatestAndVerifies(
        string point, string op, string glob, long? afterBytes)
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root);
        var job = TestDirectories.JobDirectory(faultFs.Backing);

        string previous;
        await using (var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint))
        {
            await using var client = await sidecar.ConnectAsync();
            var first = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 2 << 20), ("state.json", 100));
            Assert.Equal(CheckpointStatus.Committed, first.Status);
            previous = first.CheckpointId;

            var rule = FaultRule.SafeName(point);
            faultFs.SetRules(new FaultRule(rule, op, glob, "stall", AfterBytes: afterBytes));
            var dump = await client.BeginCheckpointAsync(20, CheckpointReason.Periodic);
            await client.CompleteDumpAsync(dump, 20, TrainerFiles.Write(dump, 0, ("model.bin", 4 << 20), ("state.json", 120)), null);
            await faultFs.WaitForTriggerAsync(rule);

            sidecar.Process.Signal(Posix.SigKill);
            Assert.Equal(128 + Posix.SigKill, await sidecar.Process.WaitForExitAsync());
        }

        faultFs.SetRules();
        Assert.Equal(previous, IndependentCheck.Latest(job));

        await using (var restarted = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint))
        {
            Assert.Empty(IndependentCheck.PartialDirectories(job));
            Assert.Equal(previous, IndependentCheck.Latest(job));
            IndependentCheck.AssertVerifies(Path.Combine(job, previous));

            await using var client = await restarted.ConnectAsync();
            var latest = await client.GetLatestCheckpointAsync();
            Assert.NotNull(latest);
            Assert.Equal(previous, latest.Id);
            Assert.Equal(10, latest.Step);
        }
    }
}
