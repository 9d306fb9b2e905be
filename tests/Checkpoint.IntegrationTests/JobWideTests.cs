using System.Text.Json;
using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// One job across two "pods": two real sidecar processes, each with its own socket, staging and pod
/// name, on two FUSE mounts of one backing directory that cache attributes, entries and file pages
/// as two NFS clients do. The ranks are SDK clients in the test process, so the test decides when
/// each pod reports. The job-wide protocol must commit through storage alone, never trusting a stat.
/// </summary>
public sealed class JobWideTests
{
    /// <summary>How long each mount trusts what it cached: longer than the test, as NFS's acregmax.</summary>
    private const double CacheSeconds = 60;
    private const string WorldId = "run1";

    [Fact]
    public async Task SlowPod_SealsLast_OneJobCheckpointCommitsAtOnce_AndEveryRankResumesIt()
    {
        await using var job = await TwoPodJob.StartAsync();
        await using var rank0 = await job.ConnectAsync(pod: 0);
        await using var rank1 = await job.ConnectAsync(pod: 1);

        var dump0 = await rank0.BeginCheckpointAsync(10);
        var files0 = TrainerFiles.Write(dump0, 0, ("model.bin", 2 << 20));
        var expected0 = await File.ReadAllBytesAsync(Path.Combine(dump0.StagingDirectory, files0[0]));
        await rank0.CompleteDumpAsync(dump0, 10, files0, null);
        var outcome0 = rank0.WaitForCheckpointAsync(dump0.CheckpointId);
        // Pod 0 is sealed and looking at storage for rank 1; pod 1 is the slow one.
        await job.Pods[0].Process.WaitForLineAsync(@"is sealed; waiting for rank\(s\) 1 \(1 of 2\)");
        Assert.False(outcome0.IsCompleted, "a job-wide checkpoint must not commit before every rank has a shard");

        var dump1 = await rank1.BeginCheckpointAsync(10);
        var files1 = TrainerFiles.Write(dump1, 1, ("model.bin", 1 << 20));
        var expected1 = await File.ReadAllBytesAsync(Path.Combine(dump1.StagingDirectory, files1[0]));
        await rank1.CompleteDumpAsync(dump1, 10, files1, null);
        var committed1 = await rank1.WaitForCheckpointAsync(dump1.CheckpointId);
        var committed0 = await outcome0;

        Assert.Equal(CheckpointStatus.Committed, committed0.Status);
        Assert.Equal(CheckpointStatus.Committed, committed1.Status);
        Assert.True(committed0.Timings!.CommitWait > TimeSpan.Zero);

        // The pod that sealed last published the commit at once, seeing every shard there: not pod-a on a
        // later look at storage. The seconds between are the storage's (fsyncs through FUSE) and the
        // machine's; the loose bound only catches a commit that waited for a poll or a timeout.
        using var manifest = JsonDocument.Parse(await File.ReadAllBytesAsync(Path.Combine(job.Backing, "default", "it-job", "step-000000010", "manifest.json")));
        var created = manifest.RootElement.GetProperty("created").GetDateTimeOffset();
        var shards = manifest.RootElement.GetProperty("shards").EnumerateArray().ToList();
        Assert.Equal(2, shards.Count);
        Assert.Equal(["pod-a", "pod-b"], shards.Select(s => s.GetProperty("pod").GetString()));
        var slowestSeal = shards.Max(s => s.GetProperty("sealed").GetDateTimeOffset());
        Assert.Equal("pod-b", manifest.RootElement.GetProperty("publishedBy").GetString());
        Assert.InRange(created - slowestSeal, TimeSpan.Zero, TimeSpan.FromSeconds(5));

        // Every rank, through its own pod's mount, resumes the same step from its own shard.
        var latest0 = await rank0.GetLatestCheckpointAsync();
        var latest1 = await rank1.GetLatestCheckpointAsync();
        Assert.Equal("step-000000010", latest0?.Id);
        Assert.Equal("step-000000010", latest1?.Id);
        Assert.Equal(2, latest0!.WorldSize);
        Assert.Equal(expected0, await File.ReadAllBytesAsync(Path.Combine(latest0.RankDirectory(0), "model.bin")));
        Assert.Equal(expected1, await File.ReadAllBytesAsync(Path.Combine(latest1!.RankDirectory(1), "model.bin")));
    }

    [Fact]
    public async Task OnePodPreempted_WhileTheOtherHasAPeriodicInFlight_BothDumpTheAgreedStep_AndItCommits()
    {
        await using var job = await TwoPodJob.StartAsync();
        await using var rank0 = await job.ConnectAsync(pod: 0);
        await using var rank1 = await job.ConnectAsync(pod: 1);
        var periodic = await rank1.BeginCheckpointAsync(20);
        TrainerFiles.Write(periodic, 1, ("model.bin", 1 << 20));

        // Pod 0 is preempted: its sidecar pushes the preemption dump to its rank. The ranks' collective
        // (here, the test) agrees on step 21 and pod 0's deadline; rank 1's pod was not preempted.
        job.Pods[0].Process.Signal(Posix.SigTerm);
        var preemption = await NextDumpAsync(rank0);
        Assert.Equal(CheckpointReason.Preemption, preemption.Reason);
        var joined = await rank1.BeginJobPreemptionCheckpointAsync(21, preemption.Deadline!.Value);

        Assert.Equal(CheckpointReason.Preemption, joined.Reason);
        Assert.Equal(preemption.Deadline, joined.Deadline);
        Assert.Equal(CheckpointStatus.Superseded, (await rank1.WaitForCheckpointAsync(periodic.CheckpointId)).Status);
        await rank0.CompleteDumpAsync(preemption, 21, TrainerFiles.Write(preemption, 0, ("model.bin", 1 << 20)), null);
        await rank1.CompleteDumpAsync(joined, 21, TrainerFiles.Write(joined, 1, ("model.bin", 1 << 20)), null);

        Assert.Equal(CheckpointStatus.Committed, (await rank0.WaitForCheckpointAsync(preemption.CheckpointId)).Status);
        Assert.Equal(CheckpointStatus.Committed, (await rank1.WaitForCheckpointAsync(joined.CheckpointId)).Status);
        Assert.Equal("step-000000021", (await rank1.GetLatestCheckpointAsync())?.Id);
        // The pod that was not preempted is not terminating: its trainer may go on (or restart in place).
        Assert.False((await rank1.GetStatusAsync()).Terminating);
        Assert.False(Directory.Exists(Path.Combine(job.Backing, "default", "it-job", "step-000000020", "manifest.json")));
    }

    private static async Task<DumpRequest> NextDumpAsync(CheckpointClient client)
    {
        var dump = new TaskCompletionSource<DumpRequest>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = client.OnDumpRequested(d => dump.TrySetResult(d));
        return client.PendingDump ?? await dump.Task.WaitAsync(TimeSpan.FromSeconds(60));
    }

    /// <summary>Two pods of one job: a sidecar each, on its own caching mount of the shared storage.</summary>
    private sealed class TwoPodJob : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _owned = [];
        private readonly List<TestDirectories> _directories = [];

        public List<SidecarProcess> Pods { get; } = [];

        public string Backing { get; private set; } = "";

        public static async Task<TwoPodJob> StartAsync()
        {
            var job = new TwoPodJob();
            string? backing = null;
            foreach (var pod in new[] { "pod-a", "pod-b" })
            {
                var dirs = new TestDirectories();
                job._directories.Add(dirs);
                var mount = await FaultFs.MountAsync(dirs.Root, keepCache: true, cacheSeconds: CacheSeconds, backing: backing);
                job._owned.Add(mount);
                backing ??= mount.Backing;
                var sidecar = await SidecarProcess.StartAsync(dirs, mount.MountPoint, new Dictionary<string, string> { ["POD_NAME"] = pod });
                job._owned.Add(sidecar);
                job.Pods.Add(sidecar);
            }

            job.Backing = backing!;
            return job;
        }

        /// <summary>Pod 0 holds rank 0 and pod 1 rank 1 of a world of two.</summary>
        public Task<CheckpointClient> ConnectAsync(int pod) =>
            CheckpointClient.ConnectAsync(new CheckpointClientOptions
            {
                SocketPath = Pods[pod].SocketPath,
                Rank = pod,
                WorldSize = 2,
                WorldId = WorldId,
                Description = $"job-wide test rank {pod}",
                HandleTermination = false,
            });

        public async ValueTask DisposeAsync()
        {
            // Sidecars before the mounts they write to.
            foreach (var owned in Enumerable.Reverse(_owned))
            {
                await owned.DisposeAsync();
            }

            foreach (var dirs in _directories)
            {
                dirs.Dispose();
            }
        }
    }
}
