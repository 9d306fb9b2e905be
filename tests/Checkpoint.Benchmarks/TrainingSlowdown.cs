using System.Diagnostics;
using System.Globalization;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Benchmarks;

/// <summary>Steps/s of the CPU-bound loop per phase, one value per round (index = round).</summary>
internal sealed record TrainingFigures(List<double> Idle, List<double> Periodic, List<double> CopySync);

/// <summary>
/// What a background checkpoint costs training: a CPU-bound loop in another process (/usr/bin/python3,
/// counting iterations and printing its rate every 0.25 s) is watched while nothing else runs, while the
/// sidecar uploads a periodic checkpoint (<see cref="CheckpointReason.Periodic"/>, default verification),
/// and while `cp -r` + `sync` copies the same bytes. A phase's rate is the mean of the windows that lie
/// wholly inside it; the phases are interleaved in an order rotated per round.
/// </summary>
/// <remarks>
/// Memory is not equalised here, unlike the flush table: on these VMs memory freed is handed back to the
/// host about 2 s later by a kernel worker that takes a core for seconds (after 4 GiB freed, the loop ran
/// at half its speed for 4.5 s, measured), so an equaliser run just before a phase put that worker inside
/// the phase, and the rounds' ratios ranged 0.6-1.2 whatever ran. Instead every phase starts
/// <see cref="ReportingWait"/> after the previous one ended (which freed memory: the copy deleted,
/// the staged bytes re-read).
/// </remarks>
internal static class TrainingSlowdown
{
    private const string Loop = """
        import time
        n = 0
        start = time.monotonic()
        while True:
            for _ in range(1000):
                n += 1
            now = time.monotonic()
            if now - start >= 0.25:
                print(n / (now - start), flush=True)
                n = 0
                start = now
        """;

    private static readonly TimeSpan Window = TimeSpan.FromSeconds(0.25);

    /// <summary>Longer than the reporting delay plus the reporting of what one phase frees (2 GiB of page cache).</summary>
    private static readonly TimeSpan ReportingWait = TimeSpan.FromSeconds(8);

    public static async Task<TrainingFigures> RunAsync(string sidecarBinary, string work, BenchmarkOptions options)
    {
        var root = Path.Combine(work, "training");
        var figures = new TrainingFigures([], [], []);
        var rates = new List<(TimeSpan At, double Rate)>();
        var clock = Stopwatch.StartNew();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            var staged = CheckpointData.Write(Path.Combine(root, "staged"), options.TrainingShape, seed: 7);
            await using var sidecar = await SidecarTarget.StartAsync(sidecarBinary, Path.Combine(root, "sidecar"), verify: null);
            using var loop = Process.Start(new ProcessStartInfo("/usr/bin/python3", ["-u", "-c", Loop])
            {
                RedirectStandardOutput = true,
                UseShellExecute = false,
            }) ?? throw new InvalidOperationException("python3 did not start");
            loop.OutputDataReceived += (_, e) =>
            {
                if (double.TryParse(e.Data, NumberStyles.Float, CultureInfo.InvariantCulture, out var rate))
                {
                    lock (rates)
                    {
                        rates.Add((clock.Elapsed, rate));
                        if (rates.Count >= 4)
                        {
                            started.TrySetResult();
                        }
                    }
                }
            };
            loop.BeginOutputReadLine();
            try
            {
                // The first windows include the interpreter's start-up.
                await started.Task.WaitAsync(TimeSpan.FromSeconds(30));
                var phases = new Func<Task>[]
                {
                    () => Task.Delay(TimeSpan.FromSeconds(options.IdleSeconds)),
                    async () => await sidecar.FlushAsync(staged, CheckpointReason.Periodic),
                    async () =>
                    {
                        await ShellContenders.RunAsync(ShellContenders.CopySync(Path.GetDirectoryName(staged[0])!, Path.Combine(root, "dest")));
                        FlushBenchmark.Delete(Path.Combine(root, "dest"));
                    },
                };
                var results = new[] { figures.Idle, figures.Periodic, figures.CopySync };
                for (var round = 0; round < options.TrainingRounds; round++)
                {
                    for (var k = 0; k < phases.Length; k++)
                    {
                        var phase = (k + round) % phases.Length;
                        CheckpointData.Warm(staged);
                        await Task.Delay(ReportingWait);
                        var from = clock.Elapsed;
                        await phases[phase]();
                        var to = clock.Elapsed;
                        List<double> inside;
                        lock (rates)
                        {
                            // A rate printed at t covers (t - 0.25 s, t]: only windows that began after the phase did.
                            inside = rates.Where(r => r.At - Window >= from && r.At <= to).Select(r => r.Rate).ToList();
                        }

                        results[phase].Add(inside.Count > 0 ? inside.Average() : double.NaN);
                    }

                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  training round {round + 1}: steps/s idle {figures.Idle[^1]:F0}, during periodic upload {figures.Periodic[^1]:F0}, during cp+sync {figures.CopySync[^1]:F0}"));
                }
            }
            finally
            {
                loop.Kill();
                await loop.WaitForExitAsync();
            }
        }
        finally
        {
            FlushBenchmark.Delete(root);
        }

        return figures;
    }
}
