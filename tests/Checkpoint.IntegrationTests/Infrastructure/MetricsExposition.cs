using System.Globalization;
using System.Text.RegularExpressions;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>Reads one series of a scraped /metrics page (Prometheus text exposition).</summary>
internal static class MetricsExposition
{
    /// <summary>The sample of <paramref name="series"/> (name and labels exactly as exposed), as written.</summary>
    public static string Text(string exposition, string series)
    {
        var match = Regex.Match(exposition, "^" + Regex.Escape(series) + @" (\S+)$", RegexOptions.Multiline);
        Assert.True(match.Success, $"series {series} not found in:\n{exposition}");
        return match.Groups[1].Value;
    }

    public static double Value(string exposition, string series) =>
        double.Parse(Text(exposition, series), CultureInfo.InvariantCulture);
}
