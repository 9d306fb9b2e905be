using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Benchmarks;

/// <summary>
/// The job-wide commit benchmark: N simulated pods, each one real sidecar process with its ranks as
/// light SDK clients in this process, against one shared storage directory. Every round every rank asks
/// for a checkpoint at the same step, writes one small file, reports it and waits for the outcome.
/// Measures how long after the slowest shard the job manifest appears, what each sidecar does to the
/// storage directory (a second, strace-counted run), and the sidecars' CPU. Prints figures; asserts nothing.
/// </summary>
internal static class JobWideBenchmark
{
    private const string PodNamespace = "bench";
    private const string ShardFile = "model.bin";

    public static async Task<int> RunAsync(JobWideOptions options, string sidecarBinary)
    {
        var work = Path.Combine(options.WorkDirectory, "jobwide-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(work);
        var strace = options.TraceRounds > 0 && FindOnPath("strace") is not null;
        var sizes = options.Pods.Contains(1) ? options.Pods : [1, .. options.Pods];
        Console.WriteLine(Invariant($"job-wide commit: {string.Join(", ", sizes)} pods x {options.RanksPerPod} ranks, {options.RankKiB} KiB per rank, {options.Rounds} checkpoints each ({(options.Preemption ? "job-wide preemption" : "periodic")}), {Environment.ProcessorCount} CPUs, work dir {work}"));
        Console.WriteLine($"sidecar: {sidecarBinary}");
        if (options.TraceRounds > 0 && !strace)
        {
            Console.WriteLine("strace not found: storage operations are not counted");
        }

        var results = new List<JobFigures>();
        try
        {
            foreach (var pods in sizes)
            {
                var figures = await RunJobAsync(sidecarBinary, work, options, pods, options.Rounds, trace: false);
                if (strace)
                {
                    var traced = await RunJobAsync(sidecarBinary, work, options, pods, options.TraceRounds, trace: true);
                    figures = figures with { Counts = traced.Counts, TracedRounds = traced.Rounds.Count };
                }

                PrintJobLine(figures);
                results.Add(figures);
            }
        }
        finally
        {
            if (!options.KeepWork)
            {
                Directory.Delete(work, recursive: true);
            }
        }

        Report(options, results);
        return 0;
    }

    private static async Task<JobFigures> RunJobAsync(string binary, string work, JobWideOptions options, int podCount, int rounds, bool trace)
    {
        var root = Path.Combine(work, Invariant($"{podCount}-pods{(trace ? "-traced" : "")}"));
        var storage = Path.Combine(root, "storage");
        Directory.CreateDirectory(storage);
        var jobName = Invariant($"job-{podCount}");
        var jobDirectory = Path.Combine(storage, PodNamespace, jobName);
        var worldSize = podCount * options.RanksPerPod;
        var worldId = CheckpointClientOptions.NewWorldId();
        var loadBefore = LoadAverage();

        var pods = new List<SimulatedPod>();
        var clients = new List<CheckpointClient>();
        try
        {
            for (var i = 0; i < podCount; i++)
            {
                pods.Add(SimulatedPod.Launch(binary, root, i, storage, PodNamespace, jobName, trace));
            }

            await Task.WhenAll(pods.Select(p => p.WaitReadyAsync(TimeSpan.FromMinutes(2))));
            var connecting = pods.SelectMany(pod => Enumerable.Range(0, options.RanksPerPod).Select(r => CheckpointClient.ConnectAsync(new CheckpointClientOptions
            {
                SocketPath = pod.Socket,
                Rank = pod.Index * options.RanksPerPod + r,
                WorldSize = worldSize,
                WorldId = worldId,
                Description = Invariant($"benchmark {pod.Name} rank {pod.Index * options.RanksPerPod + r}"),
                HandleTermination = false,
                Reattach = false,
                ConnectTimeout = TimeSpan.FromMinutes(2),
            }))).ToList();
            try
            {
                clients.AddRange(await Task.WhenAll(connecting));
            }
            catch
            {
                clients.AddRange(connecting.Where(c => c.IsCompletedSuccessfully).Select(c => c.Result));
                throw;
            }

            var payload = new byte[options.RankKiB << 10];
            Random.Shared.NextBytes(payload);

            // Idle: every rank attached, nothing in flight.
            await Task.Delay(TimeSpan.FromSeconds(1));
            var idleTicks = double.NaN;
            if (!trace && options.IdleSeconds > 0)
            {
                var idleStart = SidecarTicks(pods);
                var idleClock = Stopwatch.StartNew();
                await Task.Delay(TimeSpan.FromSeconds(options.IdleSeconds));
                idleTicks = (SidecarTicks(pods) - idleStart) / idleClock.Elapsed.TotalSeconds;
            }

            var roundFigures = new List<RoundFigures>();
            var ticksBefore = trace ? 0 : SidecarTicks(pods);
            var clientCpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var roundsStarted = DateTimeOffset.UtcNow;
            for (var round = 1; round <= rounds; round++)
            {
                var step = round * 10L;
                using var publishWatch = PublishWatch.Start(StepDirectory(jobDirectory, step));
                var clock = Stopwatch.StartNew();
                DateTimeOffset? deadline = options.Preemption ? DateTimeOffset.UtcNow.AddMinutes(5) : null;
                var ranks = await Task.WhenAll(clients.Select(c => RankRoundAsync(c, pods[c.Rank / options.RanksPerPod].Name, step, payload, deadline)))
                    .WaitAsync(TimeSpan.FromMinutes(10));
                var wall = clock.Elapsed.TotalSeconds;
                roundFigures.Add(ReadRound(jobDirectory, step, podCount, ranks, wall, publishWatch.Publishers()));
            }

            var roundsEnded = DateTimeOffset.UtcNow;
            var sidecarTicks = trace ? double.NaN : SidecarTicks(pods) - ticksBefore;
            var clientCpu = (Process.GetCurrentProcess().TotalProcessorTime - clientCpuBefore).TotalSeconds;
            var loadAfter = LoadAverage();

            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }

            clients.Clear();
            var stopped = pods.ToList();
            pods.Clear();
            foreach (var pod in stopped)
            {
                await pod.DisposeAsync();
            }

            var counts = trace
                ? stopped.Select(p => StorageTrace.Count(p.TraceFile!, jobDirectory, roundsStarted, roundsEnded)).ToList()
                : null;
            return new JobFigures(podCount, worldSize, roundFigures,
                sidecarTicks / ProcStat.TicksPerSecond / rounds,
                idleTicks / ProcStat.TicksPerSecond,
                clientCpu / rounds,
                $"{loadBefore} -> {loadAfter}",
                counts,
                trace ? rounds : 0);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var pod = pods.FirstOrDefault();
            throw new InvalidOperationException(
                $"the {podCount}-pod job failed: {e.Message}{(pod is null ? "" : $"\nlog of {pod.Name} ends:\n{pod.LogTail()}")}", e);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }

            foreach (var pod in pods)
            {
                await pod.DisposeAsync();
            }

            if (!options.KeepWork)
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }

    private static async Task<RankFigures> RankRoundAsync(CheckpointClient client, string pod, long step, byte[] payload, DateTimeOffset? deadline)
    {
        var dump = deadline is { } at
            ? await client.BeginJobPreemptionCheckpointAsync(step, at)
            : await client.BeginCheckpointAsync(step, CheckpointReason.Periodic);
        var directory = dump.RankDirectory(client.Rank);
        Directory.CreateDirectory(directory);
        await File.WriteAllBytesAsync(Path.Combine(directory, ShardFile), payload);
        await client.CompleteDumpAsync(dump, step, [CheckpointLayout.RankFile(client.Rank, ShardFile)]);
        var outcome = await client.WaitForCheckpointAsync(dump.CheckpointId);
        var told = DateTimeOffset.UtcNow;
        if (outcome.Status != CheckpointStatus.Committed || outcome.Step != step)
        {
            throw new InvalidOperationException(
                $"rank {client.Rank}: checkpoint {dump.CheckpointId} of step {step} ended {outcome.Status} (step {outcome.Step}): {outcome.Error}");
        }

        return new RankFigures(pod, told, outcome.Timings?.CommitWait ?? TimeSpan.Zero);
    }

    /// <summary>What the storage says about one committed step, with what the ranks were told.</summary>
    private static RoundFigures ReadRound(string jobDirectory, long step, int podCount, RankFigures[] ranks, double wall, int publishers)
    {
        var stepDirectory = StepDirectory(jobDirectory, step);
        var manifestPath = Path.Combine(stepDirectory, "manifest.json");
        using var manifest = JsonDocument.Parse(File.ReadAllBytes(manifestPath));
        var root = manifest.RootElement;
        var created = root.GetProperty("created").GetDateTimeOffset();
        var publishedBy = root.GetProperty("publishedBy").GetString();
        var shards = root.GetProperty("shards").EnumerateArray().Select(s => (
            Pod: s.GetProperty("pod").GetString(),
            Sealed: s.GetProperty("sealed").GetDateTimeOffset(),
            Visible: FileTimes.Changed(Path.Combine(stepDirectory, "shards", s.GetProperty("shard").GetString() + ".json")))).ToList();
        if (shards.Count != podCount)
        {
            throw new InvalidOperationException($"{manifestPath} holds {shards.Count} shards, not {podCount}");
        }

        var committed = FileTimes.Changed(manifestPath);
        var slowest = shards.MaxBy(s => s.Visible);
        var newestSealed = shards.Max(s => s.Sealed);
        // The publishing pod retires old steps (every pod's files of them) before it answers its ranks.
        var others = ranks.Where(r => r.Pod != publishedBy).ToList();
        var othersTold = others.Count > 0 ? (others.Max(r => r.Told) - slowest.Visible).TotalSeconds : double.NaN;
        var publisherTold = ranks.Where(r => r.Pod == publishedBy).Max(r => r.Told);
        return new RoundFigures(
            CommitAfterSlowest: (committed - slowest.Visible).TotalSeconds,
            CreatedAfterNewestSealed: (created - newestSealed).TotalSeconds,
            OthersToldAfterSlowest: othersTold,
            PublisherToldAfterSlowest: (publisherTold - slowest.Visible).TotalSeconds,
            SealSpread: (slowest.Visible - shards.Min(s => s.Visible)).TotalSeconds,
            MaxCommitWait: ranks.Max(r => r.CommitWait).TotalSeconds,
            Wall: wall,
            PublishedBySlowest: publishedBy == slowest.Pod,
            Publishers: publishers);
    }

    private static string StepDirectory(string jobDirectory, long step) =>
        Path.Combine(jobDirectory, "step-" + step.ToString("D9", CultureInfo.InvariantCulture));

    private static long SidecarTicks(List<SimulatedPod> pods) => pods.Sum(p => p.CpuTicks());

    private static void PrintJobLine(JobFigures f)
    {
        var commits = f.Rounds.Select(r => r.CommitAfterSlowest).ToList();
        var line = Invariant(
            $"{f.Pods} pods ({f.WorldSize} ranks): commit after slowest shard median {Ms(Median(commits))}, p99 {Ms(P99(commits))}; other pods' ranks told median {Ms(Median(f.Rounds.Select(r => r.OthersToldAfterSlowest)))}; publisher's ranks told median {Ms(Median(f.Rounds.Select(r => r.PublisherToldAfterSlowest)))}; publishers median {Median(f.Rounds.Select(r => (double)r.Publishers)):F0} max {f.Rounds.Max(r => r.Publishers)}; seal spread median {Ms(Median(f.Rounds.Select(r => r.SealSpread)))}; round {Median(f.Rounds.Select(r => r.Wall)):F2} s; sidecar CPU {f.SidecarCpuPerCheckpoint:F3} s/checkpoint; load {f.Load}");
        if (f.Counts is { } counts)
        {
            var perPod = counts.Select(c => c.Total / (double)f.TracedRounds).ToList();
            line += Invariant($"; storage ops/pod/checkpoint mean {perPod.Average():F1} max {perPod.Max():F1}");
        }

        Console.WriteLine(line);
    }

    private static void Report(JobWideOptions options, List<JobFigures> results)
    {
        Console.WriteLine();
        Console.WriteLine(Invariant($"Job-wide commit, {options.RanksPerPod} ranks per pod, {options.RankKiB} KiB per rank, {options.Rounds} checkpoints per size ({(options.Preemption ? "job-wide preemption" : "periodic")}); p99 is nearest-rank{(options.Rounds < 100 ? ": with fewer than 100 checkpoints, the worst one" : "")}."));
        Console.WriteLine("| | " + string.Join(" | ", results.Select(r => r.Pods == 1 ? "1 pod (baseline)" : Invariant($"{r.Pods} pods"))) + " |");
        Console.WriteLine("|---|" + string.Concat(results.Select(_ => "---|")));
        Row("ranks (world size)", results, r => Invariant($"{r.WorldSize}"));
        Row("**commit after the slowest shard**, median / p99 (ctime of manifest.json − ctime of the newest shard manifest)", results,
            r => $"{Ms(Median(r.Rounds.Select(x => x.CommitAfterSlowest)))} / {Ms(P99(r.Rounds.Select(x => x.CommitAfterSlowest)))}");
        Row("same, from the manifests (`created` − newest `sealed`), median / p99", results,
            r => $"{Ms(Median(r.Rounds.Select(x => x.CreatedAfterNewestSealed)))} / {Ms(P99(r.Rounds.Select(x => x.CreatedAfterNewestSealed)))}");
        Row("every rank of the other pods told (last `WaitForCheckpoint` answer − newest shard), median / p99", results,
            r => r.Pods == 1 ? "–" : $"{Ms(Median(r.Rounds.Select(x => x.OthersToldAfterSlowest)))} / {Ms(P99(r.Rounds.Select(x => x.OthersToldAfterSlowest)))}");
        Row("the publishing pod's ranks told, median / p99", results,
            r => $"{Ms(Median(r.Rounds.Select(x => x.PublisherToldAfterSlowest)))} / {Ms(P99(r.Rounds.Select(x => x.PublisherToldAfterSlowest)))}");
        Row("seal spread (first → last shard manifest), median", results, r => Ms(Median(r.Rounds.Select(x => x.SealSpread))));
        Row("longest commit wait of a pod (sidecar's `commit_wait`), median", results, r => Ms(Median(r.Rounds.Select(x => x.MaxCommitWait))));
        Row("round (first BeginCheckpoint → every rank told), median", results, r => Invariant($"{Median(r.Rounds.Select(x => x.Wall)):F2} s"));
        Row("manifest written by the pod that sealed last", results, r => Invariant($"{r.Rounds.Count(x => x.PublishedBySlowest)} of {r.Rounds.Count}"));
        Row("**pods that read every shard and wrote a job manifest** (inotify on the step directory), median / max", results,
            r => Invariant($"{Median(r.Rounds.Select(x => (double)x.Publishers)):F0} / {r.Rounds.Max(x => x.Publishers)}"));
        Row("  shard manifests they read (publishers × (pods − 1)), median", results,
            r => Invariant($"{Median(r.Rounds.Select(x => (double)x.Publishers * (r.Pods - 1))):F0}"));
        Row("sidecar CPU per checkpoint, all pods (per pod)", results, r => Invariant($"{r.SidecarCpuPerCheckpoint:F2} s ({r.SidecarCpuPerCheckpoint / r.Pods * 1000:F0} ms)"));
        Row("sidecar CPU idle, all pods, per second", results, r => Invariant($"{r.IdleCpuPerSecond:F3} s"));
        Row("benchmark process (clients) CPU per checkpoint", results, r => Invariant($"{r.ClientCpuPerCheckpoint:F2} s"));
        Row("load average (1 min) before → after", results, r => r.Load);
        if (results.All(r => r.Counts is not null))
        {
            Row(Invariant($"**storage ops per pod per checkpoint** (strace, every pod, {options.TraceRounds} checkpoints), mean / max pod"), results,
                r => Invariant($"{PerPod(r, c => c.Total).Average():F1} / {PerPod(r, c => c.Total).Max():F1}"));
            foreach (var category in StorageTrace.Categories)
            {
                Row(Invariant($"  {category}, mean per pod"), results, r => Invariant($"{PerPod(r, c => c.ByCategory[category]).Average():F1}"));
            }

            Row("  listings of shards/ (publish polls), mean / max pod", results,
                r => Invariant($"{PerPod(r, c => c.ShardListings).Average():F1} / {PerPod(r, c => c.ShardListings).Max():F1}"));
            Row("  other pods' shard manifests read, mean / max pod", results,
                r => Invariant($"{PerPod(r, c => c.ShardManifestReads).Average():F1} / {PerPod(r, c => c.ShardManifestReads).Max():F1}"));
            Row("storage ops per checkpoint, all pods together", results, r => Invariant($"{PerPod(r, c => c.Total).Sum():F0}"));
            Row("  of which shard manifests read", results, r => Invariant($"{PerPod(r, c => c.ShardManifestReads).Sum():F0}"));
        }

        Console.WriteLine();
        Console.WriteLine("Goal: commit <= 1 s after the slowest shard; metadata work O(pods), not O(pods^2).");
    }

    private static IEnumerable<double> PerPod(JobFigures figures, Func<TraceCounts, long> count) =>
        figures.Counts!.Select(c => count(c) / (double)figures.TracedRounds);

    private static void Row(string name, List<JobFigures> results, Func<JobFigures, string> cell) =>
        Console.WriteLine($"| {name} | {string.Join(" | ", results.Select(cell))} |");

    private static string Ms(double seconds) => double.IsNaN(seconds) ? "–" : Invariant($"{seconds * 1000:F0} ms");

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        var mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>Nearest-rank 99th percentile.</summary>
    private static double P99(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[(int)Math.Ceiling(0.99 * sorted.Count) - 1];
    }

    private static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

    private static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, tool))
            .FirstOrDefault(File.Exists);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed record RankFigures(string Pod, DateTimeOffset Told, TimeSpan CommitWait);

    private sealed record RoundFigures(
        double CommitAfterSlowest, double CreatedAfterNewestSealed, double OthersToldAfterSlowest, double PublisherToldAfterSlowest, double SealSpread, double MaxCommitWait, double Wall,
        bool PublishedBySlowest, int Publishers);

    private sealed record JobFigures(
        int Pods, int WorldSize, List<RoundFigures> Rounds, double SidecarCpuPerCheckpoint, double IdleCpuPerSecond, double ClientCpuPerCheckpoint,
        string Load, List<TraceCounts>? Counts, int TracedRounds);
}
