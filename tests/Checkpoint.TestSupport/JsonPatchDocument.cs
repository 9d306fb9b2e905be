using System.Globalization;
using System.Text.Json.Nodes;

namespace Checkpoint.TestSupport;

/// <summary>
/// RFC 6902 add, remove and replace on a JSON tree, written for the tests so that a webhook's patch is
/// applied by code other than the webhook's own.
/// </summary>
public static class JsonPatchDocument
{
    public static JsonNode Apply(JsonNode document, JsonArray patch)
    {
        foreach (var operation in patch)
        {
            var op = operation!["op"]!.GetValue<string>();
            var tokens = operation["path"]!.GetValue<string>().Split('/').Skip(1)
                .Select(t => t.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)).ToList();
            var parent = tokens.SkipLast(1).Aggregate(document, (node, token) => node is JsonArray array ? array[Index(token)]! : node[token]!);
            var last = tokens[^1];
            var value = operation["value"]?.DeepClone();
            switch (op, parent)
            {
                case ("add", JsonArray array) when last == "-":
                    array.Add(value);
                    break;
                case ("add", JsonArray array):
                    array.Insert(Index(last), value);
                    break;
                case ("replace", JsonArray array):
                    array[Index(last)] = value;
                    break;
                case ("add", JsonObject obj):
                    obj[last] = value;
                    break;
                case ("replace", JsonObject obj) when obj.ContainsKey(last):
                    obj[last] = value;
                    break;
                case ("remove", JsonObject obj) when obj.Remove(last):
                    break;
                case ("remove", JsonArray array):
                    array.RemoveAt(Index(last));
                    break;
                default:
                    throw new InvalidOperationException($"cannot apply {operation.ToJsonString()}");
            }
        }

        return document;
    }

    private static int Index(string token) => int.Parse(token, NumberStyles.None, CultureInfo.InvariantCulture);
}
