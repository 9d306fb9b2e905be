using System.Globalization;

namespace Checkpoint.Benchmarks;

/// <summary>Memory figures of the sidecar (MiB), and its start-up time (ms).</summary>
internal sealed record MemoryFigures(
    List<double> ReadyMilliseconds,
    List<double> IdleRssMiB,
    double RssAfterFirstClientMiB,
    double RssAfter10MiB,
    double RssAfterAllMiB,
    int SmallFlushes,
    int SmallFlushMiB,
    Shape PeakShape,
    double PeakRssMiB);

/// <summary>Markdown tables and the closing "against the goals" block. Medians of per-run ratios throughout.</summary>
internal static class FlushReport
{
    private const double MiBToMB = 1.048576;

    public static void Table(ShapeResult result)
    {
        var shape = result.Shape;
        var runs = result.Runs.Values.First().Count;
        Console.WriteLine();
        Console.WriteLine(Invariant($"#### {shape.Files} x {shape.FileMiB} MiB = {shape.GiB:F2} GiB, median of {runs} run(s)"));
        Console.WriteLine();
        Console.WriteLine("| contender | staging | median s | GiB/s | / floor | / cp+sync | CPU s/GiB | as-is s | as-is / cp+sync |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var staging in new[] { Staging.Warm, Staging.Cold })
        {
            foreach (var contender in Enum.GetValues<Contender>())
            {
                var slot = new Slot(contender, staging, true);
                var seconds = Median(result.Runs[slot].Select(m => m.Seconds));
                var floor = Paired(result, slot, slot with { Contender = FlushBenchmark.FloorOf(contender) }, m => m.Seconds);
                var copy = Paired(result, slot, slot with { Contender = Contender.CopySync }, m => m.Seconds);
                var cpu = Median(result.Runs[slot].Select(m => m.CpuSeconds / shape.GiB));
                var asIs = slot with { Equalised = false };
                var asIsColumns = result.Runs.ContainsKey(asIs)
                    ? Invariant($"{Median(result.Runs[asIs].Select(m => m.Seconds)):F2} | {Paired(result, asIs, asIs with { Contender = Contender.CopySync }, m => m.Seconds):F2}")
                    : " | ";
                Console.WriteLine(Invariant(
                    $"| {FlushBenchmark.Name(contender)} | {staging.ToString().ToLowerInvariant()} | {seconds:F2} | {shape.GiB / seconds:F2} | {floor:F2} | {copy:F2} | {cpu:F2} | {asIsColumns} |"));
            }
        }

        Console.WriteLine();
        var phases = from staging in new[] { Staging.Warm, Staging.Cold }
                     from contender in new[] { Contender.SidecarReadBack, Contender.SidecarWriteHash }
                     let measured = result.Runs[new Slot(contender, staging, true)]
                     select Invariant($"{FlushBenchmark.Name(contender)} {staging.ToString().ToLowerInvariant()}: copy {Median(measured.Select(m => m.CopySeconds)):F2}, verify {Median(measured.Select(m => m.VerifySeconds)):F2}");
        Console.WriteLine("sidecar phases as it reports them (median s): " + string.Join("; ", phases));
    }

    public static void Training(TrainingFigures training)
    {
        Console.WriteLine();
        Console.WriteLine(Invariant($"#### Training slowdown (CPU-bound loop in another process), median of {training.Idle.Count} round(s)"));
        Console.WriteLine();
        Console.WriteLine("| phase | steps/s | / idle |");
        Console.WriteLine("|---|---|---|");
        Console.WriteLine(Invariant($"| idle | {Median(training.Idle):F0} | 1.00 |"));
        Console.WriteLine(Invariant($"| periodic upload (sidecar) | {Median(training.Periodic):F0} | {Median(training.Periodic.Zip(training.Idle, (a, b) => a / b)):F2} |"));
        Console.WriteLine(Invariant($"| cp -r + sync | {Median(training.CopySync):F0} | {Median(training.CopySync.Zip(training.Idle, (a, b) => a / b)):F2} |"));
    }

    public static void Memory(MemoryFigures memory)
    {
        Console.WriteLine();
        Console.WriteLine("#### Sidecar start-up and memory");
        Console.WriteLine();
        Console.WriteLine(Invariant($"- ready (exec to first gRPC answer), median of {memory.ReadyMilliseconds.Count} starts: {Median(memory.ReadyMilliseconds):F0} ms"));
        Console.WriteLine(Invariant($"- idle RSS after one client, median of {memory.IdleRssMiB.Count} starts: {Median(memory.IdleRssMiB):F1} MiB ({Median(memory.IdleRssMiB) * MiBToMB:F1} MB)"));
        Console.WriteLine(Invariant($"- RSS of one sidecar after one client {memory.RssAfterFirstClientMiB:F1} MiB, after 10 flushes of {memory.SmallFlushMiB} MiB {memory.RssAfter10MiB:F1} MiB, after {memory.SmallFlushes} {memory.RssAfterAllMiB:F1} MiB"));
        Console.WriteLine(Invariant($"- peak RSS (VmHWM) of a fresh sidecar flushing {memory.PeakShape.Files} x {memory.PeakShape.FileMiB} MiB ({memory.PeakShape.GiB:F2} GiB): {memory.PeakRssMiB:F1} MiB ({memory.PeakRssMiB * MiBToMB:F1} MB)"));
    }

    /// <summary>Each goal of issue 11 with what this run measured; it asserts nothing.</summary>
    public static void Goals(IReadOnlyList<ShapeResult> shapes, TrainingFigures training, MemoryFigures memory)
    {
        Console.WriteLine();
        Console.WriteLine("#### Against the goals (issue 11)");
        Console.WriteLine();

        // Goal 1: each verification mode within 1.1x of its own floor, every shape, warm and cold (equalised).
        var floorRatios = (from s in shapes
                           from staging in new[] { Staging.Warm, Staging.Cold }
                           from c in new[] { Contender.SidecarReadBack, Contender.SidecarWriteHash }
                           let slot = new Slot(c, staging, true)
                           select (Where: Invariant($"{FlushBenchmark.Name(c)} {s.Shape} {staging.ToString().ToLowerInvariant()}"),
                                   Ratio: Paired(s, slot, slot with { Contender = FlushBenchmark.FloorOf(c) }, m => m.Seconds))).ToList();
        Goal("1. flush within 1.1x of its verification mode's floor (all shapes, warm and cold)", floorRatios, 1.1, higherIsBetter: false);

        // Goal 2: CPU per GiB at most 2x cp's (cp + sync: bash, cp and sync as reaped children).
        var cpuRatios = (from s in shapes
                         from staging in new[] { Staging.Warm, Staging.Cold }
                         from c in new[] { Contender.SidecarReadBack, Contender.SidecarWriteHash }
                         let slot = new Slot(c, staging, true)
                         select (Where: Invariant($"{FlushBenchmark.Name(c)} {s.Shape} {staging.ToString().ToLowerInvariant()}"),
                                 Ratio: Paired(s, slot, slot with { Contender = Contender.CopySync }, m => m.CpuSeconds))).ToList();
        Goal("2a. sidecar CPU per GiB <= 2x cp's", cpuRatios, 2, higherIsBetter: false);
        var periodic = Median(training.Periodic.Zip(training.Idle, (a, b) => a / b));
        Goal("2b. training loop >= 0.9x idle steps/s during a periodic upload", [("periodic upload", periodic)], 0.9, higherIsBetter: true);
        Console.WriteLine("- 3. budget-aware verification: not measured here (integration tests cover it)");

        var idleMB = Median(memory.IdleRssMiB) * MiBToMB;
        Goal("4a. idle RSS <= 20 MB", [("median of starts", idleMB)], 20, higherIsBetter: false);
        var growthMB = (memory.RssAfterAllMiB - memory.RssAfter10MiB) * MiBToMB;
        Goal(Invariant($"4b. no RSS growth across {memory.SmallFlushes} flushes (after {memory.SmallFlushes} minus after 10, MB; <= 1 MB counts as none)"),
            [("growth", growthMB)], 1, higherIsBetter: false);
        Goal(Invariant($"4c. peak RSS <= 80 MB flushing {memory.PeakShape.Files} x {memory.PeakShape.FileMiB} MiB"), [("VmHWM", memory.PeakRssMiB * MiBToMB)], 80, higherIsBetter: false);
        Console.WriteLine("- 5. memory equalised before every contender, interleaved, medians of paired ratios: this benchmark");
        Goal("(earlier goal) ready <= 150 ms", [("median", Median(memory.ReadyMilliseconds))], 150, higherIsBetter: false);
    }

    private static void Goal(string goal, List<(string Where, double Value)> values, double limit, bool higherIsBetter)
    {
        var worst = higherIsBetter ? values.MinBy(v => v.Value) : values.MaxBy(v => v.Value);
        var met = higherIsBetter ? worst.Value >= limit : worst.Value <= limit;
        var all = values.Count > 1 ? " (" + string.Join(", ", values.Select(v => Invariant($"{v.Where} {v.Value:F2}"))) + ")" : "";
        Console.WriteLine(Invariant($"- {goal}: {(values.Count > 1 ? "worst " : "")}{worst.Where} {worst.Value:F2}: **{(met ? "met" : "not met")}**{all}"));
    }

    /// <summary>The median over runs of a / b, each pair from the same run.</summary>
    public static double Paired(ShapeResult result, Slot a, Slot b, Func<Measurement, double> value) =>
        Median(result.Runs[a].Zip(result.Runs[b], (x, y) => value(x) / value(y)));

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        if (sorted.Count == 0)
        {
            return double.NaN;
        }

        var mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
