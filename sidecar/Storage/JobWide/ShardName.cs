using System.Globalization;
using System.Text;

namespace Checkpoint.Sidecar.Storage.JobWide;

/// <summary>
/// The file name of a sealed shard in <c>step-N/shards/</c>: <c>&lt;world&gt;_&lt;pod&gt;_&lt;attempt&gt;_r&lt;ranks&gt;.json</c>,
/// for example <c>a1b2c3d4e5f60718_trainer-3_5c0e1f2a_r24-31.json</c>. The world and the ranks are in
/// the name so that one directory listing tells any pod whether the world is covered: only the pod
/// that publishes reads the shard manifests themselves (O(pods) reads once, not per pod).
/// </summary>
/// <param name="World">The run of the world the ranks belong to (empty: no run identity given).</param>
/// <param name="Pod">The pod that sealed it (its name, shortened to fit a file name).</param>
/// <param name="Attempt">Random per flush: a pod sealing the same step again never replaces its earlier shard or files.</param>
/// <param name="Ranks">The global ranks whose files the shard holds, ascending.</param>
internal sealed record ShardName(string World, string Pod, string Attempt, IReadOnlyList<int> Ranks)
{
    public const string Extension = ".json";
    private const int MaxPodLength = 100;

    /// <summary>The shard's data directory under the step: unique per pod and attempt, never <c>shards</c>.</summary>
    public string DataDirectory => $"{Pod}_{Attempt}";

    public string FileName => $"{World}_{Pod}_{Attempt}_r{FormatRanks(Ranks)}{Extension}";

    public static ShardName Create(string world, string pod, string attempt, IEnumerable<int> ranks) =>
        new(world, SafePod(pod), attempt, ranks.Order().ToList());

    /// <summary>Null for anything that is not a shard name (a temp file, a stranger's file).</summary>
    public static ShardName? Parse(string fileName)
    {
        if (!fileName.EndsWith(Extension, StringComparison.Ordinal))
        {
            return null;
        }

        var parts = fileName[..^Extension.Length].Split('_');
        if (parts.Length != 4 || !JobWorld.IsValidId(parts[0]) || parts[1].Length == 0 || !IsSafePod(parts[1])
            || parts[2].Length == 0 || !parts[2].All(char.IsAsciiHexDigitLower) || !parts[3].StartsWith('r'))
        {
            return null;
        }

        var ranks = ParseRanks(parts[3][1..]);
        return ranks is null ? null : new ShardName(parts[0], parts[1], parts[2], ranks);
    }

    /// <summary>Ascending ranks as ranges: <c>0-7</c>, <c>0-3.8-11</c>, <c>5</c>.</summary>
    public static string FormatRanks(IReadOnlyList<int> ranks)
    {
        var text = new StringBuilder();
        for (var i = 0; i < ranks.Count;)
        {
            var j = i;
            while (j + 1 < ranks.Count && ranks[j + 1] == ranks[j] + 1)
            {
                j++;
            }

            text.Append(text.Length > 0 ? "." : "").Append(ranks[i].ToString(CultureInfo.InvariantCulture));
            if (j > i)
            {
                text.Append('-').Append(ranks[j].ToString(CultureInfo.InvariantCulture));
            }

            i = j + 1;
        }

        return text.ToString();
    }

    private static List<int>? ParseRanks(string text)
    {
        var ranks = new List<int>();
        foreach (var range in text.Split('.'))
        {
            var ends = range.Split('-');
            if (ends.Length > 2
                || !int.TryParse(ends[0], NumberStyles.None, CultureInfo.InvariantCulture, out var first)
                || !int.TryParse(ends[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var last)
                || last < first || last - first > 1_000_000 || (ranks.Count > 0 && first <= ranks[^1]))
            {
                return null;
            }

            for (var r = first; r <= last; r++)
            {
                ranks.Add(r);
            }
        }

        return ranks.Count == 0 ? null : ranks;
    }

    /// <summary>A pod name as a file-name part: DNS characters only, no '_' (the separator), bounded.</summary>
    public static string SafePod(string pod)
    {
        var safe = new string(pod.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' ? c : '-').ToArray())
            .Trim('.', '-');
        safe = safe.Length > MaxPodLength ? safe[..MaxPodLength].Trim('.', '-') : safe;
        return safe.Length == 0 ? "pod" : safe;
    }

    private static bool IsSafePod(string pod) => pod == SafePod(pod);
}
