using System.Globalization;
using System.Text;

namespace Checkpoint.Sidecar.Operations;

/// <summary>How the operator commands write for people: sizes, ages, and untrusted text made safe for a terminal.</summary>
internal static class OperatorText
{
    /// <summary>
    /// Text from storage (a reason, a pod, a problem quoting a file name) with control characters
    /// shown as '?': a forged manifest must not be able to send escape sequences to the operator's
    /// terminal.
    /// </summary>
    public static string Safe(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }

        var safe = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            safe.Append(char.IsControl(c) ? '?' : c);
        }

        return safe.ToString();
    }

    public static string Quote(string? text) => $"'{Safe(Storage.UserText.Cap(text))}'";

    public static string Bytes(long? bytes)
    {
        if (bytes is not { } b)
        {
            return "-";
        }

        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double value = b;
        var unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return unit == 0 ? $"{b} B" : value.ToString(value < 10 ? "0.0" : "0", CultureInfo.InvariantCulture) + " " + units[unit];
    }

    /// <summary><c>45s</c>, <c>12m</c>, <c>3h</c>, <c>2d</c>: how long ago, to the unit that matters.</summary>
    public static string Age(double? seconds) => seconds switch
    {
        null => "-",
        < 0 => "future",
        < 120 => $"{seconds:0}s",
        < 2 * 3600 => $"{seconds / 60:0}m",
        < 2 * 86400 => $"{seconds / 3600:0}h",
        _ => $"{seconds / 86400:0}d",
    };

    public static string Seconds(double seconds) => seconds.ToString(seconds < 10 ? "0.000" : "0.0", CultureInfo.InvariantCulture) + " s";

    public static string Percent(double ratio) => double.IsFinite(ratio) ? (ratio * 100).ToString("0", CultureInfo.InvariantCulture) + " %" : "-";

    /// <summary>Rows as left-aligned columns, two spaces apart.</summary>
    public static void Table(TextWriter output, IReadOnlyList<string[]> rows)
    {
        if (rows.Count == 0)
        {
            return;
        }

        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var row in rows)
        {
            output.WriteLine(string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }
    }
}
