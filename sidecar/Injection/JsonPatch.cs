using System.Text.Json;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Sidecar.Injection;

/// <summary>One RFC 6902 operation; <see cref="Value"/> is null for remove.</summary>
internal sealed record JsonPatchOperation(string Op, string Path, YamlNode? Value);

/// <summary>
/// The JSON Patch that turns one tree into another. The mutation mostly appends (containers, mounts,
/// volumes, env), so a list whose old items are an unchanged prefix gets "add .../-" per new item; any
/// other change of a list replaces it whole.
/// </summary>
internal static class JsonPatch
{
    public static List<JsonPatchOperation> Diff(YamlNode before, YamlNode after)
    {
        var operations = new List<JsonPatchOperation>();
        Diff(before, after, "", operations);
        return operations;
    }

    public static byte[] Serialize(IReadOnlyList<JsonPatchOperation> operations)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartArray();
            foreach (var operation in operations)
            {
                writer.WriteStartObject();
                writer.WriteString("op", operation.Op);
                writer.WriteString("path", operation.Path);
                if (operation.Value is not null)
                {
                    writer.WritePropertyName("value");
                    JsonYaml.Write(writer, operation.Value);
                }

                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        }

        return buffer.ToArray();
    }

    private static void Diff(YamlNode before, YamlNode after, string path, List<JsonPatchOperation> operations)
    {
        switch (before, after)
        {
            case (YamlMappingNode a, YamlMappingNode b):
                foreach (var (key, _) in a.Children)
                {
                    if (!b.Children.ContainsKey(key))
                    {
                        operations.Add(new("remove", path + "/" + Escape(key), null));
                    }
                }

                foreach (var (key, value) in b.Children)
                {
                    if (a.Children.TryGetValue(key, out var old))
                    {
                        Diff(old, value, path + "/" + Escape(key), operations);
                    }
                    else
                    {
                        operations.Add(new("add", path + "/" + Escape(key), value));
                    }
                }

                break;
            case (YamlSequenceNode a, YamlSequenceNode b)
                when a.Children.Count <= b.Children.Count && a.Children.Zip(b.Children).All(p => YamlTree.DeepEquals(p.First, p.Second)):
                foreach (var added in b.Children.Skip(a.Children.Count))
                {
                    operations.Add(new("add", path + "/-", added));
                }

                break;
            case (YamlSequenceNode a, YamlSequenceNode b) when a.Children.Count == b.Children.Count:
                for (var i = 0; i < a.Children.Count; i++)
                {
                    Diff(a.Children[i], b.Children[i], path + "/" + i, operations);
                }

                break;
            default:
                if (!YamlTree.DeepEquals(before, after))
                {
                    operations.Add(new("replace", path, after));
                }

                break;
        }
    }

    private static string Escape(YamlNode key) => (((YamlScalarNode)key).Value ?? "").Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
}
