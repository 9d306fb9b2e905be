using System.Globalization;

namespace Checkpoint.Benchmarks;

/// <summary>Options of the job-wide commit benchmark (<c>--jobwide</c>).</summary>
/// <param name="Pods">Job sizes to measure, in pods; a 1-pod baseline is always measured first.</param>
/// <param name="RanksPerPod">Trainer ranks (SDK clients) per pod.</param>
/// <param name="Rounds">Checkpoints (steps) measured per job size.</param>
/// <param name="RankKiB">Size of the one file each rank writes per checkpoint.</param>
/// <param name="Preemption">Each round is a job-wide preemption checkpoint with a deadline instead of a periodic one.</param>
/// <param name="TraceRounds">Checkpoints of the separate, strace-counted run per job size; 0 skips counting.</param>
/// <param name="IdleSeconds">How long the attached, idle sidecars are watched for their idle CPU.</param>
/// <param name="WorkDirectory">Where staging and the shared storage directory are made (removed at the end).</param>
/// <param name="KeepWork">Leave the work directory (sidecar logs, strace output, storage) for a look.</param>
internal sealed record JobWideOptions(
    IReadOnlyList<int> Pods, int RanksPerPod, int Rounds, int RankKiB, bool Preemption, int TraceRounds, double IdleSeconds, string WorkDirectory, bool KeepWork = false)
{
    public const string Flag = "--jobwide";

    private const string Usage =
        "options: --jobwide [--pods 8,32,64] [--ranks-per-pod 8] [--rounds 10] [--rank-kib 64] [--reason periodic|preemption] [--trace-rounds 3] [--idle-seconds 3] [--work DIR] [--keep-work]";

    /// <returns>null after printing what was wrong.</returns>
    public static JobWideOptions? Parse(string[] args)
    {
        var options = new JobWideOptions([8, 32, 64], 8, 10, 64, false, 3, 3, Path.Combine(Directory.GetCurrentDirectory(), "artifacts", "bench"));
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == Flag)
            {
                continue;
            }

            if (args[i] == "--keep-work")
            {
                options = options with { KeepWork = true };
                continue;
            }

            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--pods" when TryPositiveList(value, out var pods):
                    options = options with { Pods = pods };
                    break;
                case "--ranks-per-pod" when TryCount(value, 1, out var ranks):
                    options = options with { RanksPerPod = ranks };
                    break;
                case "--rounds" when TryCount(value, 1, out var rounds):
                    options = options with { Rounds = rounds };
                    break;
                case "--rank-kib" when TryCount(value, 1, out var kib):
                    options = options with { RankKiB = kib };
                    break;
                case "--reason" when value is "periodic" or "preemption":
                    options = options with { Preemption = value == "preemption" };
                    break;
                case "--trace-rounds" when TryCount(value, 0, out var traced):
                    options = options with { TraceRounds = traced };
                    break;
                case "--idle-seconds" when TryCount(value, 0, out var idle):
                    options = options with { IdleSeconds = idle };
                    break;
                case "--work" when !string.IsNullOrEmpty(value):
                    options = options with { WorkDirectory = Path.GetFullPath(value) };
                    break;
                default:
                    Console.Error.WriteLine($"unknown or incomplete option '{args[i]}'; {Usage}");
                    return null;
            }

            i++;
        }

        return options;
    }

    private static bool TryCount(string? text, int minimum, out int value) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= minimum;

    private static bool TryPositiveList(string? text, out IReadOnlyList<int> values)
    {
        var parsed = new List<int>();
        foreach (var part in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!TryCount(part, 1, out var value))
            {
                values = [];
                return false;
            }

            parsed.Add(value);
        }

        values = parsed;
        return parsed.Count > 0;
    }
}
