using System.Globalization;

namespace Checkpoint.Benchmarks;

internal sealed record BenchmarkOptions(int Runs, int Files, int FileMiB, string WorkDirectory, int Starts)
{
    public long TotalBytes => (long)Files * FileMiB << 20;

    /// <returns>null after printing what was wrong.</returns>
    public static BenchmarkOptions? Parse(string[] args)
    {
        var options = new BenchmarkOptions(5, 8, 256, Path.Combine(Directory.GetCurrentDirectory(), "artifacts", "bench"), 10);
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--runs" when TryPositive(value, out var runs):
                    options = options with { Runs = runs };
                    break;
                case "--files" when TryPositive(value, out var files):
                    options = options with { Files = files };
                    break;
                case "--file-mib" when TryPositive(value, out var mib):
                    options = options with { FileMiB = mib };
                    break;
                case "--starts" when TryPositive(value, out var starts):
                    options = options with { Starts = starts };
                    break;
                case "--work" when !string.IsNullOrEmpty(value):
                    options = options with { WorkDirectory = Path.GetFullPath(value) };
                    break;
                default:
                    Console.Error.WriteLine($"unknown or incomplete option '{args[i]}'; options: --runs N --files N --file-mib N --starts N --work DIR");
                    return null;
            }

            i++;
        }

        return options;
    }

    private static bool TryPositive(string? text, out int value) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value > 0;
}
