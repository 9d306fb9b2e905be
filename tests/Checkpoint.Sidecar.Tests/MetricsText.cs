using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Prometheus;

namespace Checkpoint.Sidecar.Tests;

/// <summary>One sample of the Prometheus text exposition.</summary>
internal sealed record MetricSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>Reads a private registry the way a scraper does: exported as text, then parsed.</summary>
internal static partial class MetricsText
{
    public static async Task<IReadOnlyList<MetricSample>> CollectAsync(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        var text = Encoding.UTF8.GetString(stream.ToArray());
        return Parse(text);
    }

    public static IReadOnlyList<MetricSample> Parse(string text)
    {
        var samples = new List<MetricSample>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }

            var valueStart = line.LastIndexOf(' ');
            var series = line[..valueStart];
            var value = ParseValue(line[(valueStart + 1)..]);
            var brace = series.IndexOf('{', StringComparison.Ordinal);
            var name = brace < 0 ? series : series[..brace];
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            if (brace >= 0)
            {
                foreach (Match m in LabelPattern().Matches(series[brace..]))
                {
                    labels[m.Groups[1].Value] = m.Groups[2].Value;
                }
            }

            samples.Add(new MetricSample(name, labels, value));
        }

        return samples;
    }

    /// <summary>The value of the series with exactly these labels; fails the test when it is not exported.</summary>
    public static double Value(this IReadOnlyList<MetricSample> samples, string name, params (string Name, string Value)[] labels)
    {
        var matches = samples.Where(s => s.Name == name && s.Labels.Count == labels.Length
            && labels.All(l => s.Labels.TryGetValue(l.Name, out var v) && v == l.Value)).ToList();
        Assert.True(matches.Count == 1,
            $"expected one series {name}{{{string.Join(",", labels.Select(l => $"{l.Name}=\"{l.Value}\""))}}}, found {matches.Count}");
        return matches[0].Value;
    }

    private static double ParseValue(string text) => text switch
    {
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        "NaN" => double.NaN,
        _ => double.Parse(text, CultureInfo.InvariantCulture),
    };

    [GeneratedRegex(@"(\w+)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelPattern();
}
