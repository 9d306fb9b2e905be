using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// SIGKILL of the sidecar at several points of a flush, held there by the fault-injecting
/// filesystem the storage is mounted through. After a restart the newest committed step must be
/// the one resumed from, and it must verify: the previous step when the kill came before the job
/// manifest was linked (the step it was writing has no manifest, is never resumed from, and is
/// removed once a newer step commits), the new step when it came after (LATEST, a hint, lags).
/// </summary>
public sealed class CrashRecoveryTests
{
    public static TheoryData<string, string, string, long?, bool> KillPoints => new()
    {
        // point name, faultfs op, path glob (below the mount root), bytes written before the stall, whether step 20 was committed
        { "while-copying-data", "write", "*/step-*/*_*/rank-0/model.bin", 1 << 20, false },
        { "at-file-fsync", "fsync", "*/step-*/*_*/rank-0/model.bin", null, false },
        { "creating-shard-seal", "create", "*/step-*/shards/.*.tmp", null, false },
        { "renaming-shard-seal", "rename", "*/step-*/shards/.*.tmp", null, false },
        { "writing-job-manifest", "create", "*/step-*/.*.manifest.tmp", null, false },
        { "linking-job-manifest", "link", "*/step-*/manifest.json", null, false },
        { "writing-latest", "create", "*/LATEST.*.tmp", null, true },
        { "renaming-latest", "rename", "*/LATEST.*.tmp", null, true },
    };

    [Theory]
    [MemberData(nameof(KillPoints))]
    public async Task SigkillDuringFlush_AfterRestart_NewestCommittedStepIsResumedAndVerifies(
        string point, string op, string glob, long? afterBytes, bool committedBeforeKill)
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root);
        var job = TestDirectories.JobDirectory(faultFs.Backing);
        var previous = IndependentCheck.StepDirectory(job, 10);
        var killed = IndependentCheck.StepDirectory(job, 20);

        await using (var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint))
        {
            await using var client = await sidecar.ConnectAsync();
            var first = await TrainerFiles.CheckpointAsync(client, 10, 0, ("model.bin", 2 << 20), ("state.json", 100));
            Assert.Equal(CheckpointStatus.Committed, first.Status);
            Assert.Equal(IndependentCheck.StepName(10), IndependentCheck.Latest(job));

            var rule = FaultRule.SafeName(point);
            faultFs.SetRules(new FaultRule(rule, op, glob, "stall", AfterBytes: afterBytes));
            var dump = await client.BeginCheckpointAsync(20, CheckpointReason.Periodic);
            await client.CompleteDumpAsync(dump, 20, TrainerFiles.Write(dump, 0, ("model.bin", 4 << 20), ("state.json", 120)), null);
            await faultFs.WaitForTriggerAsync(rule);

            sidecar.Process.Signal(Posix.SigKill);
            Assert.Equal(128 + Posix.SigKill, await sidecar.Process.WaitForExitAsync());
        }

        faultFs.SetRules();
        // The stalled op was not performed: LATEST never moved past the previous step.
        Assert.Equal(IndependentCheck.StepName(10), IndependentCheck.Latest(job));
        Assert.Equal(committedBeforeKill, IndependentCheck.IsCommitted(killed));
        if (!committedBeforeKill)
        {
            Assert.Equal([killed], IndependentCheck.UncommittedSteps(job));
        }

        var expected = committedBeforeKill ? 20 : 10;
        await using (var restarted = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint))
        {
            // Start-up swept the LATEST temp a killed pointer move leaves; the killed step is left as it was.
            Assert.Equal(["LATEST"], Directory.GetFiles(job).Select(Path.GetFileName).Where(n => n!.StartsWith("LATEST", StringComparison.Ordinal)));
            Assert.Equal(committedBeforeKill, IndependentCheck.IsCommitted(killed));
            IndependentCheck.AssertVerifies(previous);
            if (committedBeforeKill)
            {
                IndependentCheck.AssertVerifies(killed);
            }

            await using var client = await restarted.ConnectAsync();
            var latest = await client.GetLatestCheckpointAsync();
            Assert.NotNull(latest);
            Assert.Equal(IndependentCheck.StepName(expected), latest.Id);
            Assert.Equal(expected, latest.Step);
            var expectedStep = IndependentCheck.StepDirectory(job, expected);
            Assert.Equal(
                Path.GetRelativePath(job, IndependentCheck.ShardDirectory(expectedStep, 0)),
                Path.GetRelativePath(TestDirectories.JobDirectory(faultFs.MountPoint), latest.Directory));

            // The next commit moves LATEST on and retires the step the kill left uncommitted (after
            // telling the trainer: the log line says when).
            var retired = committedBeforeKill
                ? Task.CompletedTask
                : restarted.Process.WaitForLineAsync($"Retention removed checkpoint {IndependentCheck.StepName(20)}");
            var next = await TrainerFiles.CheckpointAsync(client, 30, 0, ("model.bin", 1 << 20));
            Assert.Equal(CheckpointStatus.Committed, next.Status);
            Assert.Equal(IndependentCheck.StepName(30), IndependentCheck.Latest(job));
            IndependentCheck.AssertVerifies(IndependentCheck.StepDirectory(job, 30));
            IndependentCheck.AssertVerifies(previous);
            await retired;
            Assert.Equal(committedBeforeKill, Directory.Exists(killed));
            Assert.Empty(IndependentCheck.UncommittedSteps(job));
        }
    }
}
