using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Benchmarks;

/// <summary>
/// Flushes a large checkpoint through the real published sidecar and, in the same run and on the
/// same disk, times the baselines a platform team would otherwise script: `cp -r` + `sync`, and the
/// same followed by `sha256sum` of both sides. Also measures the sidecar's idle RSS and the time
/// from exec to its socket accepting calls. Prints medians and ratios; it asserts nothing.
/// </summary>
/// <remarks>
/// Usage: dotnet run -c Release --project tests/Checkpoint.Benchmarks -- [--runs 5] [--files 8]
/// [--file-mib 256] [--work DIR] [--starts 10]. With --jobwide it runs the job-wide commit benchmark instead
/// (<see cref="JobWideBenchmark"/>, <see cref="JobWideOptions"/>). The sidecar binary comes from CHECKPOINT_SIDECAR_BIN
/// or artifacts/sidecar/checkpoint-sidecar (tests/run-tests.sh and deploy/demo/run-demo.sh publish it).
/// </remarks>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Contains(JobWideOptions.Flag))
        {
            var jobWide = JobWideOptions.Parse(args);
            return jobWide is null ? 2 : await JobWideBenchmark.RunAsync(jobWide, FindSidecar());
        }

        var options = BenchmarkOptions.Parse(args);
        if (options is null)
        {
            return 2;
        }

        var sidecarBinary = FindSidecar();
        Directory.CreateDirectory(options.WorkDirectory);
        var work = Path.Combine(options.WorkDirectory, "bench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(work);
        try
        {
            Console.WriteLine($"checkpoint: {options.Files} files x {options.FileMiB} MiB = {options.TotalBytes / (1 << 20)} MiB, {options.Runs} runs, work dir {work}");
            Console.WriteLine($"sidecar: {sidecarBinary} ({new FileInfo(sidecarBinary).Length / 1e6:F1} MB)");
            var flush = await MeasureFlushesAsync(sidecarBinary, work, options);
            var startup = await MeasureStartupAsync(sidecarBinary, work, options.Starts);
            Report(options, flush, startup);
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static async Task<FlushFigures> MeasureFlushesAsync(string sidecarBinary, string work, BenchmarkOptions options)
    {
        var dirs = SidecarDirectories.Create(Path.Combine(work, "flush"));
        var source = Path.Combine(work, "cp-source");
        var figures = new FlushFigures();
        await using var sidecar = await RunningSidecar.StartAsync(sidecarBinary, dirs, keep: 1);
        await using var client = await CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = dirs.Socket,
            HandleTermination = false,
            Description = "benchmark",
        });

        for (var run = 1; run <= options.Runs; run++)
        {
            // Interleaved so that drift of the machine over time hits every contender alike.
            var dump = await client.BeginCheckpointAsync(run, CheckpointReason.Manual);
            var files = CheckpointData.Write(Path.Combine(dump.StagingDirectory, "rank-0"), options, run);
            var relative = files.Select(f => Path.GetRelativePath(dump.StagingDirectory, f)).ToList();
            var clock = Stopwatch.StartNew();
            await client.CompleteDumpAsync(dump, run, relative, null);
            var outcome = await client.WaitForCheckpointAsync(dump.CheckpointId);
            var elapsed = clock.Elapsed;
            if (outcome.Status != CheckpointStatus.Committed)
            {
                throw new InvalidOperationException($"flush {dump.CheckpointId} did not commit: {outcome.Error}");
            }

            figures.Sidecar.Add(elapsed.TotalSeconds);
            figures.SidecarCopy.Add(outcome.Timings!.Copy.TotalSeconds);
            figures.SidecarVerify.Add(outcome.Timings.Verify.TotalSeconds);
            figures.SidecarCommit.Add(outcome.Timings.Commit.TotalSeconds);

            CheckpointData.Write(source, options, run);
            figures.CopySync.Add(await TimeShellAsync($"cp -r '{source}' '{work}/cp-dest' && sync"));
            Delete(Path.Combine(work, "cp-dest"));

            CheckpointData.Write(source, options, run);
            figures.NaiveVerified.Add(await TimeShellAsync(
                $"cp -r '{source}' '{work}/cp-dest' && sync && sha256sum '{source}'/* > /dev/null && sha256sum '{work}/cp-dest'/* > /dev/null"));
            Delete(Path.Combine(work, "cp-dest"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"run {run}: sidecar {elapsed.TotalSeconds:F2} s (copy {outcome.Timings.Copy.TotalSeconds:F2}, verify {outcome.Timings.Verify.TotalSeconds:F2}, commit {outcome.Timings.Commit.TotalSeconds:F3}), cp+sync {figures.CopySync[^1]:F2} s, cp+sync+sha256sum {figures.NaiveVerified[^1]:F2} s"));
        }

        Delete(source);
        return figures;
    }

    /// <summary>Exec to a completed gRPC call over the socket, then RSS once the process idles.</summary>
    private static async Task<StartupFigures> MeasureStartupAsync(string sidecarBinary, string work, int starts)
    {
        var figures = new StartupFigures();
        for (var i = 0; i < starts; i++)
        {
            var dirs = SidecarDirectories.Create(Path.Combine(work, "start-" + i.ToString(CultureInfo.InvariantCulture)));
            var clock = Stopwatch.StartNew();
            await using var sidecar = RunningSidecar.Launch(sidecarBinary, dirs, keep: 1);
            await WaitUntilAcceptingAsync(dirs.Socket, TimeSpan.FromSeconds(10));
            await using (var client = await CheckpointClient.ConnectAsync(new CheckpointClientOptions { SocketPath = dirs.Socket, HandleTermination = false }))
            {
                await client.GetStatusAsync();
                figures.ReadyMilliseconds.Add(clock.Elapsed.TotalMilliseconds);
            }

            // Idle means: started, one client came and went, nothing in flight.
            await Task.Delay(TimeSpan.FromSeconds(1));
            figures.IdleRssMiB.Add(sidecar.ResidentMiB());
        }

        return figures;
    }

    private static async Task WaitUntilAcceptingAsync(string socketPath, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
                return;
            }
            catch (SocketException) when (clock.Elapsed < limit)
            {
                // Polling is the measurement here: the first moment a connect succeeds.
                await Task.Yield();
            }
        }
    }

    private static async Task<double> TimeShellAsync(string script)
    {
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(new ProcessStartInfo("bash", ["-c", script])) ?? throw new InvalidOperationException("bash did not start");
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{script}' exited with {process.ExitCode}");
        }

        return clock.Elapsed.TotalSeconds;
    }

    private static void Report(BenchmarkOptions options, FlushFigures flush, StartupFigures startup)
    {
        var sidecar = Median(flush.Sidecar);
        var copySync = Median(flush.CopySync);
        var naive = Median(flush.NaiveVerified);
        var gib = options.TotalBytes / (double)(1L << 30);
        Console.WriteLine();
        Console.WriteLine($"Flush of {gib:F2} GiB ({options.Files} x {options.FileMiB} MiB), median of {options.Runs} runs, same disk:");
        Console.WriteLine("| contender | median s | GiB/s | sidecar / this |");
        Console.WriteLine("|---|---|---|---|");
        Row("sidecar (copy + fsync + read-back verify + commit)", sidecar, gib, 1);
        Row("cp -r + sync", copySync, gib, sidecar / copySync);
        Row("cp -r + sync + sha256sum both sides", naive, gib, sidecar / naive);
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sidecar phases (median): copy {Median(flush.SidecarCopy):F2} s, verify {Median(flush.SidecarVerify):F2} s, commit {Median(flush.SidecarCommit) * 1000:F1} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ratio sidecar / cp+sync = {sidecar / copySync:F2} (goal <= 1.25); sidecar / naive-verified = {sidecar / naive:F2} (goal <= 0.5)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sidecar ready (exec to first gRPC answer), median of {startup.ReadyMilliseconds.Count}: {Median(startup.ReadyMilliseconds):F0} ms (goal <= 150 ms); idle RSS median {Median(startup.IdleRssMiB):F1} MiB (goal <= 30 MB)"));
    }

    private static void Row(string name, double seconds, double gib, double ratio) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {seconds:F2} | {gib / seconds:F2} | {ratio:F2} |"));

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        var mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private static void Delete(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }

    private static string FindSidecar()
    {
        var path = Environment.GetEnvironmentVariable("CHECKPOINT_SIDECAR_BIN");
        if (string.IsNullOrEmpty(path))
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "artifacts", "sidecar", "checkpoint-sidecar");
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return File.Exists(path) ? path
            : throw new FileNotFoundException("No published sidecar: run `dotnet publish sidecar -c Release -o artifacts/sidecar` or set CHECKPOINT_SIDECAR_BIN.");
    }

    private sealed class FlushFigures
    {
        public List<double> Sidecar { get; } = [];

        public List<double> SidecarCopy { get; } = [];

        public List<double> SidecarVerify { get; } = [];

        public List<double> SidecarCommit { get; } = [];

        public List<double> CopySync { get; } = [];

        public List<double> NaiveVerified { get; } = [];
    }

    private sealed class StartupFigures
    {
        public List<double> ReadyMilliseconds { get; } = [];

        public List<double> IdleRssMiB { get; } = [];
    }
}
