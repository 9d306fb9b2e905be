using System.Globalization;

namespace Checkpoint.Benchmarks;

/// <summary>
/// A checkpoint's shape: how many files of how many MiB (a multiple of 4: the floors copy in 4 MiB blocks),
/// and optionally its own number of runs ("1x8192:2"), so the large shapes fit the time budget.
/// </summary>
internal sealed record Shape(int Files, int FileMiB, int? Runs = null)
{
    public long TotalBytes => (long)Files * FileMiB << 20;

    public double GiB => TotalBytes / (double)(1L << 30);

    public long FileBytes => (long)FileMiB << 20;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Files}x{FileMiB}");

    /// <summary>The same files, whatever the runs: what the peak-RSS shape is compared by.</summary>
    public bool SameFiles(Shape other) => Files == other.Files && FileMiB == other.FileMiB;

    /// <summary>"8x256": 8 files of 256 MiB; "1x8192:2": and 2 runs; null when malformed.</summary>
    public static Shape? Parse(string text)
    {
        var (files, rest) = Split(text, 'x');
        var (mib, runs) = Split(rest, ':');
        return Positive(files) is { } f && Positive(mib) is { } m && m % 4 == 0
            ? runs is null ? new Shape(f, m) : Positive(runs) is { } r ? new Shape(f, m, r) : null
            : null;
    }

    private static (string Head, string? Tail) Split(string? text, char separator)
    {
        var at = text?.IndexOf(separator, StringComparison.Ordinal) ?? -1;
        return at < 0 ? (text ?? "", null) : (text![..at], text[(at + 1)..]);
    }

    private static int? Positive(string? text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value > 0 ? value : null;
}

/// <param name="Runs">Runs per shape (unless the shape names its own); each run times every contender once, in an order rotated per run.</param>
/// <param name="Shapes">The checkpoint shapes flushed.</param>
/// <param name="EqualiseGiB">Anonymous memory touched and freed before each equalised contender (<see cref="MemoryEqualiser"/>).</param>
/// <param name="FloorStreams">Concurrent dd streams of the floors (files split into ranges when there are fewer files).</param>
/// <param name="SmallFlushes">Small flushes through one sidecar for the RSS growth figure (RSS is taken after 10 and after all).</param>
/// <param name="PeakShape">The flush whose peak RSS (VmHWM of a fresh sidecar) is reported.</param>
/// <param name="TrainingShape">The periodic upload the training-slowdown figure runs under.</param>
internal sealed record BenchmarkOptions(
    int Runs,
    IReadOnlyList<Shape> Shapes,
    string WorkDirectory,
    int Starts,
    double EqualiseGiB,
    int FloorStreams,
    int SmallFlushes,
    int SmallFlushMiB,
    Shape PeakShape,
    Shape TrainingShape,
    int TrainingRounds,
    double IdleSeconds)
{
    public const string Usage =
        "options: --quick --runs N --shapes 1x2048,8x256,1x8192:2,... --equalise-gib G --floor-streams N --starts N "
        + "--small-flushes N --small-flush-mib N --peak-shape 1x8192 --training-shape 8x256 --training-rounds N --work DIR";

    public static BenchmarkOptions Default(string workDirectory) => new(
        3,
        [new(1, 2048), new(8, 256), new(64, 32), new(1, 8192, 2), new(8, 1024, 2)],
        workDirectory, 10, 4, 4, 100, 64, new(1, 8192), new(8, 256), 3, 4);

    /// <summary>A smoke run of every part in about two minutes: small sizes, one run.</summary>
    public static BenchmarkOptions Quick(string workDirectory) => new(
        1, [new(1, 64), new(4, 32)], workDirectory, 3, 0.5, 4, 12, 8, new(1, 256), new(4, 64), 1, 2);

    /// <returns>null after printing what was wrong.</returns>
    public static BenchmarkOptions? Parse(string[] args)
    {
        var work = Path.Combine(Directory.GetCurrentDirectory(), "artifacts", "bench");
        var options = args.Contains("--quick") ? Quick(work) : Default(work);
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--quick")
            {
                continue;
            }

            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--runs" when TryPositive(value, out var runs):
                    options = options with { Runs = runs };
                    break;
                case "--shapes" when value?.Split(',').Select(Shape.Parse).ToList() is { } shapes && !shapes.Contains(null):
                    options = options with { Shapes = shapes.OfType<Shape>().ToList() };
                    break;
                case "--equalise-gib" when double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var gib) && gib >= 0:
                    options = options with { EqualiseGiB = gib };
                    break;
                case "--floor-streams" when TryPositive(value, out var streams):
                    options = options with { FloorStreams = streams };
                    break;
                case "--starts" when TryPositive(value, out var starts):
                    options = options with { Starts = starts };
                    break;
                case "--small-flushes" when TryPositive(value, out var flushes) && flushes >= 10:
                    options = options with { SmallFlushes = flushes };
                    break;
                case "--small-flush-mib" when TryPositive(value, out var mib) && mib % 4 == 0:
                    options = options with { SmallFlushMiB = mib };
                    break;
                case "--peak-shape" when value is not null && Shape.Parse(value) is { } peak:
                    options = options with { PeakShape = peak };
                    break;
                case "--training-shape" when value is not null && Shape.Parse(value) is { } training:
                    options = options with { TrainingShape = training };
                    break;
                case "--training-rounds" when TryPositive(value, out var rounds):
                    options = options with { TrainingRounds = rounds };
                    break;
                case "--work" when !string.IsNullOrEmpty(value):
                    options = options with { WorkDirectory = Path.GetFullPath(value) };
                    break;
                default:
                    Console.Error.WriteLine($"unknown or incomplete option '{args[i]}' (shapes are FILESxMiB, MiB a multiple of 4; --small-flushes >= 10); {Usage}");
                    return null;
            }

            i++;
        }

        return options;
    }

    private static bool TryPositive(string? text, out int value) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value > 0;
}
