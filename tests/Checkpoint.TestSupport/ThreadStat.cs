namespace Checkpoint.TestSupport;

/// <summary>A thread of a process as /proc shows it: id, name (comm) and nice (field 19 of its stat).</summary>
public sealed record ThreadStat(int ThreadId, string Name, int Nice)
{
    /// <summary>One thread; null when it has ended.</summary>
    public static ThreadStat? Read(int processId, int threadId)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{processId}/task/{threadId}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        // comm may hold spaces and parentheses: the fields after it start after the last ')'.
        var open = stat.IndexOf('(', StringComparison.Ordinal);
        var close = stat.LastIndexOf(')');
        var fields = stat[(close + 2)..].Split(' ');
        // fields[0] is field 3 (state); nice is field 19.
        return new ThreadStat(threadId, stat[(open + 1)..close], int.Parse(fields[19 - 3], System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>Every thread of a process that is still there.</summary>
    public static IReadOnlyList<ThreadStat> ReadAll(int processId) =>
        Directory.EnumerateDirectories($"/proc/{processId}/task")
            .Select(d => Read(processId, int.Parse(Path.GetFileName(d), System.Globalization.CultureInfo.InvariantCulture)))
            .OfType<ThreadStat>()
            .ToList();

    /// <summary>CAP_SYS_NICE in the effective set: only then may a thread lower its nice again.</summary>
    public static bool HasCapSysNice()
    {
        const int capSysNice = 23;
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
        var mask = Convert.ToUInt64(line["CapEff:".Length..].Trim(), 16);
        return (mask & (1UL << capSysNice)) != 0;
    }
}
