using System.Text.Json.Nodes;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>YAML as a JSON tree, for resources that have no model type (CRDs, rule files) and for comparisons.</summary>
internal static class Yaml
{
    /// <summary>Each document of a multi-document YAML stream, as JSON (scalars stay strings).</summary>
    public static List<JsonNode> LoadAll(string text)
    {
        var stream = new YamlStream();
        using var reader = new StringReader(text);
        stream.Load(reader);
        return stream.Documents.Select(d => ToJson(d.RootNode)!).Where(n => n is not null).ToList();
    }

    public static JsonNode Load(string text) => Assert.Single(LoadAll(text));

    /// <summary>The documents of a stream as separate texts (for typed deserialization by kind).</summary>
    public static List<string> SplitDocuments(string text)
    {
        var stream = new YamlStream();
        using var reader = new StringReader(text);
        stream.Load(reader);
        var documents = new List<string>();
        foreach (var document in stream.Documents)
        {
            using var writer = new StringWriter();
            new YamlStream(document).Save(writer, assignAnchors: false);
            documents.Add(writer.ToString());
        }

        return documents;
    }

    /// <summary>The root mapping of a single-document YAML text.</summary>
    public static YamlMappingNode Root(string text)
    {
        var stream = new YamlStream();
        using var reader = new StringReader(text);
        stream.Load(reader);
        return (YamlMappingNode)Assert.Single(stream.Documents).RootNode;
    }

    /// <summary>The node at a path of mapping keys, or null where a key is missing.</summary>
    public static YamlNode? Child(YamlMappingNode node, params string[] path)
    {
        YamlNode current = node;
        foreach (var key in path)
        {
            if (current is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next))
            {
                return null;
            }

            current = next;
        }

        return current;
    }

    /// <summary>The scalar at a path of mapping keys, or null.</summary>
    public static string? Scalar(YamlMappingNode node, params string[] path) => (Child(node, path) as YamlScalarNode)?.Value;

    /// <summary>A subtree as YAML text of its own, scalar styles kept (for typed deserialization of an embedded object).</summary>
    public static string Text(YamlNode node)
    {
        using var writer = new StringWriter();
        new YamlStream(new YamlDocument(node)).Save(writer, assignAnchors: false);
        return writer.ToString();
    }

    private static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(kv =>
            KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, ToJson(kv.Value)))),
        YamlSequenceNode seq => new JsonArray(seq.Children.Select(ToJson).ToArray()),
        YamlScalarNode { Value: null or "" or "~" or "null", Style: YamlDotNet.Core.ScalarStyle.Plain } => null,
        YamlScalarNode scalar => JsonValue.Create(scalar.Value),
        _ => throw new NotSupportedException(node.GetType().Name),
    };
}
