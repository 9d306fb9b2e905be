using System.Globalization;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Sidecar.Injection;

/// <summary>
/// Reading and changing a YAML node tree (YamlDotNet's representation model: no reflection, so it
/// runs under Native AOT, and it keeps key order, flow style and scalar quoting of what it loaded).
/// CRDs (JobSet, PyTorchJob, ...) have no typed model, and the webhook's JSON goes through the same
/// tree, so the mutation is written once against it.
/// </summary>
internal static partial class YamlTree
{
    public static YamlNode? Get(YamlMappingNode map, string key) =>
        map.Children.TryGetValue(new YamlScalarNode(key), out var value) ? value : null;

    public static YamlMappingNode? Map(YamlMappingNode map, string key) => Get(map, key) as YamlMappingNode;

    public static YamlSequenceNode? Seq(YamlMappingNode map, string key) => Get(map, key) as YamlSequenceNode;

    public static string? Str(YamlMappingNode map, string key) => (Get(map, key) as YamlScalarNode)?.Value;

    public static bool IsNull(YamlNode? node) =>
        node is null || node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any, Value: null or "" or "~" or "null" or "Null" or "NULL" };

    /// <summary>The mapping under <paramref name="key"/>, added (block style) at the end when missing or null.</summary>
    public static YamlMappingNode GetOrAddMap(YamlMappingNode map, string key)
    {
        if (Map(map, key) is { } existing)
        {
            return existing;
        }

        var added = new YamlMappingNode();
        Set(map, key, added);
        return added;
    }

    public static YamlSequenceNode GetOrAddSeq(YamlMappingNode map, string key)
    {
        if (Seq(map, key) is { } existing)
        {
            return existing;
        }

        var added = new YamlSequenceNode();
        Set(map, key, added);
        return added;
    }

    /// <summary>Sets a key, in place when it exists (its position kept), at the end otherwise.</summary>
    public static void Set(YamlMappingNode map, string key, YamlNode value) => map.Children[new YamlScalarNode(key)] = value;

    public static void Remove(YamlMappingNode map, string key) => map.Children.Remove(new YamlScalarNode(key));

    /// <summary>A string scalar, quoted where YAML would otherwise read it as a number, boolean or null.</summary>
    public static YamlScalarNode String(string value) =>
        new(value) { Style = LooksTyped(value) || value.Length == 0 ? ScalarStyle.DoubleQuoted : ScalarStyle.Plain };

    public static YamlScalarNode Number(long value) => new(value.ToString(CultureInfo.InvariantCulture)) { Style = ScalarStyle.Plain };

    public static YamlScalarNode Bool(bool value) => new(value ? "true" : "false") { Style = ScalarStyle.Plain };

    /// <summary>Parses a YAML fragment (the injected containers and volumes are written as YAML, like the examples).</summary>
    public static YamlNode Parse(string yaml)
    {
        var stream = new YamlStream();
        using var reader = new StringReader(yaml);
        stream.Load(reader);
        return stream.Documents[0].RootNode;
    }

    /// <summary>True when a plain scalar with this text would not be a string (YAML 1.1 and 1.2 core schemas).</summary>
    public static bool LooksTyped(string value) => TypedScalar().IsMatch(value);

    [GeneratedRegex(@"^(~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N|[-+]?(0|[1-9][0-9_]*)|0o?[0-7]+|0x[0-9a-fA-F]+|[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$")]
    private static partial Regex TypedScalar();

    /// <summary>Structural equality: keys in order, scalar values (not their quoting style).</summary>
    public static bool DeepEquals(YamlNode a, YamlNode b) => (a, b) switch
    {
        (YamlScalarNode x, YamlScalarNode y) => x.Value == y.Value && IsPlain(x) == IsPlain(y),
        (YamlSequenceNode x, YamlSequenceNode y) => x.Children.Count == y.Children.Count
            && x.Children.Zip(y.Children).All(p => DeepEquals(p.First, p.Second)),
        (YamlMappingNode x, YamlMappingNode y) => x.Children.Count == y.Children.Count
            && x.Children.Zip(y.Children).All(p => DeepEquals(p.First.Key, p.Second.Key) && DeepEquals(p.First.Value, p.Second.Value)),
        _ => false,
    };

    /// <summary>A plain scalar whose text reads as a number, boolean or null (quoted and block scalars are strings).</summary>
    public static bool IsPlain(YamlScalarNode scalar) => scalar.Style is ScalarStyle.Plain or ScalarStyle.Any && LooksTyped(scalar.Value ?? "");
}
