using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Benchmarks;

/// <summary>
/// Flushes checkpoints of several shapes through the real published sidecar and, in the same runs and on the
/// same disk, times `cp -r` + `sync` and the physical floors of both verification modes (dd at O_DIRECT), with
/// memory equalised before every contender (<see cref="MemoryEqualiser"/>); then the slowdown of a CPU-bound
/// loop in another process during a periodic upload, and the sidecar's start-up time and memory. Prints
/// Markdown tables and each goal of issue 11 with what was measured; it asserts nothing.
/// </summary>
/// <remarks>
/// Usage: dotnet run -c Release --project tests/Checkpoint.Benchmarks -- [--quick] [--runs 3]
/// [--shapes 1x2048,8x256,64x32,1x8192,8x1024] [--equalise-gib 4] (all in <see cref="BenchmarkOptions.Usage"/>).
/// With --jobwide it runs the job-wide commit benchmark instead (<see cref="JobWideBenchmark"/>,
/// <see cref="JobWideOptions"/>). The sidecar binary comes from CHECKPOINT_SIDECAR_BIN or
/// artifacts/sidecar/checkpoint-sidecar (tests/run-tests.sh and deploy/demo/run-demo.sh publish it).
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
        var clock = Stopwatch.StartNew();
        try
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"shapes {string.Join(", ", options.Shapes)} (files x MiB), {options.Runs} run(s), memory equalised with {options.EqualiseGiB:F2} GiB, floors in {options.FloorStreams} dd streams, work dir {work}"));
            Console.WriteLine($"sidecar: {sidecarBinary} ({new FileInfo(sidecarBinary).Length / 1e6:F1} MB)");
            var equaliser = new MemoryEqualiser(options.EqualiseGiB);
            var flushes = new FlushBenchmark(sidecarBinary, work, options, equaliser);
            var results = new List<ShapeResult>();
            double? peak = null;
            for (var i = 0; i < options.Shapes.Count; i++)
            {
                var shape = options.Shapes[i];
                var measurePeak = shape.SameFiles(options.PeakShape) && peak is null;
                results.Add(await flushes.RunAsync(shape, seed: i + 1,
                    measurePeak ? async staged => peak = await MeasurePeakAsync(sidecarBinary, work, staged, equaliser) : null));
                FlushReport.Table(results[^1]);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ({clock.Elapsed.TotalMinutes:F1} min so far)"));
            }

            if (peak is null)
            {
                var staged = CheckpointData.Write(Path.Combine(work, "peak-staged"), options.PeakShape, seed: 99);
                peak = await MeasurePeakAsync(sidecarBinary, work, staged, equaliser);
                FlushBenchmark.Delete(Path.Combine(work, "peak-staged"));
            }

            var training = await TrainingSlowdown.RunAsync(sidecarBinary, work, options);
            FlushReport.Training(training);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ({clock.Elapsed.TotalMinutes:F1} min so far)"));
            var memory = await MeasureMemoryAsync(sidecarBinary, work, options, peak.Value);
            FlushReport.Memory(memory);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ({clock.Elapsed.TotalMinutes:F1} min so far)"));
            FlushReport.Goals(results, training, memory);
            Console.WriteLine();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"memory equalisation: {equaliser.Touches.Count} touches of {options.EqualiseGiB:F2} GiB, median {FlushReport.Median(equaliser.Touches):F2} s (~2 s/GiB means the host had taken the pages back)"));
            Console.WriteLine();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"total {clock.Elapsed.TotalMinutes:F1} min"));
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>VmHWM of a fresh sidecar (read-back verify, the default) after one flush of the staged files.</summary>
    private static async Task<double> MeasurePeakAsync(string sidecarBinary, string work, IReadOnlyList<string> staged, MemoryEqualiser equaliser)
    {
        await using var sidecar = await SidecarTarget.StartAsync(sidecarBinary, Path.Combine(work, "peak"), verify: null);
        CheckpointData.Warm(staged);
        await equaliser.EqualiseAsync();
        await sidecar.FlushAsync(staged, CheckpointReason.Manual);
        return sidecar.Process.PeakResidentMiB();
    }

    private static async Task<MemoryFigures> MeasureMemoryAsync(string sidecarBinary, string work, BenchmarkOptions options, double peakMiB)
    {
        var (ready, idle) = await MeasureStartupAsync(sidecarBinary, work, options.Starts);
        var root = Path.Combine(work, "small");
        try
        {
            var staged = CheckpointData.Write(Path.Combine(root, "staged"), new Shape(1, options.SmallFlushMiB), seed: 11);
            await using var sidecar = await SidecarTarget.StartAsync(sidecarBinary, Path.Combine(root, "sidecar"), verify: null);
            await Task.Delay(TimeSpan.FromSeconds(1));
            var first = sidecar.Process.ResidentMiB();
            var after10 = 0.0;
            for (var i = 1; i <= options.SmallFlushes; i++)
            {
                await sidecar.FlushAsync(staged, CheckpointReason.Manual);
                if (i == 10)
                {
                    // RSS once the flush's transient work is over, as between two real checkpoints.
                    await Task.Delay(TimeSpan.FromSeconds(1));
                    after10 = sidecar.Process.ResidentMiB();
                }
            }

            await Task.Delay(TimeSpan.FromSeconds(1));
            var afterAll = sidecar.Process.ResidentMiB();
            return new MemoryFigures(ready, idle, first, after10, afterAll, options.SmallFlushes, options.SmallFlushMiB, options.PeakShape, peakMiB);
        }
        finally
        {
            FlushBenchmark.Delete(root);
        }
    }

    /// <summary>Exec to a completed gRPC call over the socket, then RSS once the process idles.</summary>
    private static async Task<(List<double> ReadyMilliseconds, List<double> IdleRssMiB)> MeasureStartupAsync(string sidecarBinary, string work, int starts)
    {
        var ready = new List<double>();
        var idle = new List<double>();
        for (var i = 0; i < starts; i++)
        {
            var dirs = SidecarDirectories.Create(Path.Combine(work, "start-" + i.ToString(CultureInfo.InvariantCulture)));
            var clock = Stopwatch.StartNew();
            await using var sidecar = RunningSidecar.Launch(sidecarBinary, dirs, keep: 1);
            await WaitUntilAcceptingAsync(dirs.Socket, TimeSpan.FromSeconds(10));
            await using (var client = await CheckpointClient.ConnectAsync(new CheckpointClientOptions { SocketPath = dirs.Socket, HandleTermination = false }))
            {
                await client.GetStatusAsync();
                ready.Add(clock.Elapsed.TotalMilliseconds);
            }

            // Idle means: started, one client came and went, nothing in flight.
            await Task.Delay(TimeSpan.FromSeconds(1));
            idle.Add(sidecar.ResidentMiB());
        }

        return (ready, idle);
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
}
