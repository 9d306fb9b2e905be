using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Sidecar.Injection;

/// <summary>
/// JSON in and out of the YAML node tree the mutation works on, so the webhook runs the same
/// mutation as <c>inject</c>. JSON strings become quoted scalars and numbers, booleans and null plain
/// ones, so the way back to JSON keeps every value's type.
/// </summary>
internal static partial class JsonYaml
{
    public static YamlNode FromJson(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => new YamlMappingNode(element.EnumerateObject().Select(p =>
            KeyValuePair.Create<YamlNode, YamlNode>(new YamlScalarNode(p.Name) { Style = ScalarStyle.DoubleQuoted }, FromJson(p.Value)))),
        JsonValueKind.Array => new YamlSequenceNode(element.EnumerateArray().Select(FromJson)),
        JsonValueKind.String => new YamlScalarNode(element.GetString()) { Style = ScalarStyle.DoubleQuoted },
        JsonValueKind.Number => new YamlScalarNode(element.GetRawText()) { Style = ScalarStyle.Plain },
        JsonValueKind.True => new YamlScalarNode("true") { Style = ScalarStyle.Plain },
        JsonValueKind.False => new YamlScalarNode("false") { Style = ScalarStyle.Plain },
        _ => new YamlScalarNode("null") { Style = ScalarStyle.Plain },
    };

    public static void Write(Utf8JsonWriter writer, YamlNode node)
    {
        switch (node)
        {
            case YamlMappingNode map:
                writer.WriteStartObject();
                foreach (var (key, value) in map.Children)
                {
                    writer.WritePropertyName(((YamlScalarNode)key).Value ?? "");
                    Write(writer, value);
                }

                writer.WriteEndObject();
                break;
            case YamlSequenceNode sequence:
                writer.WriteStartArray();
                foreach (var item in sequence.Children)
                {
                    Write(writer, item);
                }

                writer.WriteEndArray();
                break;
            case YamlScalarNode scalar:
                WriteScalar(writer, scalar);
                break;
            default:
                throw new InjectionException($"cannot write a {node.NodeType} node as JSON");
        }
    }

    private static void WriteScalar(Utf8JsonWriter writer, YamlScalarNode scalar)
    {
        var text = scalar.Value ?? "";
        if (scalar.Style is not (ScalarStyle.Plain or ScalarStyle.Any))
        {
            writer.WriteStringValue(text);
        }
        else if (YamlTree.IsNull(scalar))
        {
            writer.WriteNullValue();
        }
        else if (text is "true" or "True" or "TRUE" or "false" or "False" or "FALSE")
        {
            writer.WriteBooleanValue(text[0] is 't' or 'T');
        }
        else if (JsonNumber().IsMatch(text))
        {
            writer.WriteRawValue(text);
        }
        else if (long.TryParse(text.Replace("_", "", StringComparison.Ordinal), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) && YamlTree.LooksTyped(text))
        {
            writer.WriteNumberValue(number);
        }
        else
        {
            writer.WriteStringValue(text);
        }
    }

    [GeneratedRegex(@"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$")]
    private static partial Regex JsonNumber();
}
