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
