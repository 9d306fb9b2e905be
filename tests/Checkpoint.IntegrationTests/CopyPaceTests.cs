using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TestSupport;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// A periodic upload must not slow training, a preemption flush must use everything: the published
/// sidecar's copy threads run at CHECKPOINT_PERIODIC_NICE while a periodic checkpoint uploads, and at
/// nice 0 while a preemption flush does. Each copy is held in a write by the fault-injecting
/// filesystem, so its threads are looked at mid-copy, not guessed at.
/// </summary>
/// <remarks>
/// Needs the copier that runs its workers on dedicated threads calling <c>CopyPace.BeforeChunk</c>
/// (issue 11). A copier still on thread-pool threads never lowers a priority (a pool thread would carry
/// it into unrelated work), and the first assertion fails saying so.
/// </remarks>
public sealed class CopyPaceTests
{
    private const int PeriodicNice = 13;

    [Fact]
    public async Task PeriodicUpload_CopiesAtTheBackgroundNice_PreemptionFlushAtNiceZero()
    {
        using var dirs = new TestDirectories();
        await using var faultFs = await FaultFs.MountAsync(dirs.Root);
        await using var sidecar = await SidecarProcess.StartAsync(dirs, storage: faultFs.MountPoint, overrides: new Dictionary<string, string>
        {
            ["CHECKPOINT_PERIODIC_NICE"] = PeriodicNice.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["CHECKPOINT_PERIODIC_IO_CLASS"] = "idle",
            ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = "60",
        });
        var client = await sidecar.ConnectAsync();
        var pid = sidecar.Process.Pid;

        faultFs.SetRules(new FaultRule("periodic", "write", "*/step-*/*_*/rank-0/model.bin", "stall", AfterBytes: 1L << 20));
        var periodic = await client.BeginCheckpointAsync(5, CheckpointReason.Periodic);
        var periodicDone = client.WaitForCheckpointAsync(periodic.CheckpointId);
        await client.CompleteDumpAsync(periodic, 5, TrainerFiles.Write(periodic, 0, ("model.bin", 8 << 20)), null);
        await faultFs.WaitForTriggerAsync("periodic");

        var duringPeriodic = ThreadStat.ReadAll(pid);
        Assert.True(duringPeriodic.Any(t => t.Nice == PeriodicNice),
            $"no thread of the sidecar runs at CHECKPOINT_PERIODIC_NICE={PeriodicNice} while its periodic upload is held in a write. "
            + "The copier must run its workers on dedicated threads that call CopyPace.BeforeChunk before each chunk (issue 11); "
            + $"a copier on thread-pool threads leaves their priority alone. Threads: {Describe(duringPeriodic)}");

        // Only this rule: a release of all of them would disarm the next one too.
        Directory.CreateDirectory(Path.Combine(faultFs.Control, "release"));
        File.WriteAllText(Path.Combine(faultFs.Control, "release", "periodic"), "");
        Assert.Equal(CheckpointStatus.Committed, (await periodicDone.WaitAsync(TimeSpan.FromSeconds(60))).Status);

        faultFs.SetRules(new FaultRule("preemption", "write", "*/step-*/*_*/rank-0/model.bin", "stall", AfterBytes: 1L << 20));
        sidecar.Process.Signal(Posix.SigTerm);
        var dump = await MultiRankTests.DumpRequestAsync(client);
        var preemptionDone = client.WaitForCheckpointAsync(dump.CheckpointId);
        await client.CompleteDumpAsync(dump, 6, TrainerFiles.Write(dump, 0, ("model.bin", 8 << 20)), null);
        await faultFs.WaitForTriggerAsync("preemption");

        // The periodic upload's threads ended with it; the preemption flush's own never left nice 0.
        var duringPreemption = ThreadStat.ReadAll(pid);
        Assert.True(duringPreemption.All(t => t.Nice == 0), $"a thread of the sidecar is niced during a preemption flush: {Describe(duringPreemption)}");

        faultFs.ReleaseAll();
        Assert.Equal(CheckpointStatus.Committed, (await preemptionDone.WaitAsync(TimeSpan.FromSeconds(60))).Status);
    }

    private static string Describe(IEnumerable<ThreadStat> threads) =>
        string.Join(", ", threads.Select(t => $"{t.ThreadId} '{t.Name}' nice {t.Nice}"));
}
