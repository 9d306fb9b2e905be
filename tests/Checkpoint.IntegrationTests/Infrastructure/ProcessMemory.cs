using System.Globalization;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>What the kernel says a process holds in memory (/proc/&lt;pid&gt;/status).</summary>
/// <param name="ResidentMiB">VmRSS: resident now.</param>
/// <param name="PeakResidentMiB">VmHWM: the most it was ever resident, so a peak between two looks is not missed.</param>
/// <param name="AnonymousMiB">RssAnon: the resident part that is the process's own (heaps, stacks), not pages of files.</param>
internal sealed record ProcessMemory(double ResidentMiB, double PeakResidentMiB, double AnonymousMiB)
{
    public static ProcessMemory Of(int pid)
    {
        var lines = File.ReadAllLines($"/proc/{pid}/status");
        return new ProcessMemory(MiB(lines, "VmRSS:"), MiB(lines, "VmHWM:"), MiB(lines, "RssAnon:"));
    }

    public override string ToString() => $"VmRSS {ResidentMiB:F1} MiB, VmHWM {PeakResidentMiB:F1} MiB, RssAnon {AnonymousMiB:F1} MiB";

    private static double MiB(string[] lines, string field)
    {
        var line = lines.Single(l => l.StartsWith(field, StringComparison.Ordinal));
        var kiB = long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return kiB / 1024.0;
    }
}
