using System.Text.Json;
using YamlDotNet.RepresentationModel;
using static Checkpoint.Sidecar.Injection.YamlTree;

namespace Checkpoint.Sidecar.Injection;

/// <summary>What one admission request came to, for the log.</summary>
internal enum AdmissionOutcome
{
    Injected,
    NotRequested,
    AlreadyInjected,
    Refused,
}

/// <summary>
/// The mutating webhook's decision on one <c>admission.k8s.io/v1</c> AdmissionReview of a Pod: the
/// same mutation as <c>inject</c>, answered as a JSON Patch. Pods opt in with the label (or
/// annotation) <c>checkpoint-sidecar/inject: "true"</c>; others, and pods injected already (by inject
/// on their template, or by an earlier call), are allowed unchanged. A pod that asked for the sidecar
/// but cannot have it (no trainer to tell, a name clash) is denied with inject's message: started
/// without its sidecar it would lose its work at the first preemption, and the message says what to fix.
/// </summary>
internal static class AdmissionReviewHandler
{
    public const string OptInKey = PodTemplateMutator.Prefix + "inject";

    /// <exception cref="JsonException">The body is not an AdmissionReview (answered 400 by the server).</exception>
    public static (byte[] Response, AdmissionOutcome Outcome, string Message) Review(ReadOnlyMemory<byte> body, InjectionOptions options)
    {
        using var document = JsonDocument.Parse(body);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("request", out var request)
            || !request.TryGetProperty("uid", out var uidElement) || uidElement.GetString() is not { } uid)
        {
            throw new JsonException("not an AdmissionReview: no request.uid");
        }

        if (!request.TryGetProperty("object", out var podElement) || podElement.ValueKind != JsonValueKind.Object)
        {
            return (Answer(uid, allowed: true, patch: null, message: null), AdmissionOutcome.NotRequested, "no object");
        }

        var original = (YamlMappingNode)JsonYaml.FromJson(podElement);
        var pod = (YamlMappingNode)JsonYaml.FromJson(podElement);
        var metadata = Map(pod, "metadata");
        var name = metadata is null ? null : Str(metadata, "name") ?? Str(metadata, "generateName");
        var ns = (request.TryGetProperty("namespace", out var nsElement) ? nsElement.GetString() : null) ?? "";
        var where = $"pod {ns}/{name}";
        var kind = request.TryGetProperty("kind", out var kindElement) && kindElement.TryGetProperty("kind", out var k) ? k.GetString() : null;
        if (kind != "Pod" || !OptedIn(metadata))
        {
            return (Answer(uid, allowed: true, patch: null, message: null), AdmissionOutcome.NotRequested, where);
        }

        // The object of an admission request may leave out apiVersion and kind; the injector keys on them.
        Set(pod, "apiVersion", String("v1"));
        Set(pod, "kind", String("Pod"));
        try
        {
            if (!ManifestInjector.InjectDocument(pod, where, options))
            {
                return (Answer(uid, allowed: true, patch: null, message: null), AdmissionOutcome.AlreadyInjected, where);
            }
        }
        catch (InjectionException e)
        {
            var message = $"checkpoint-sidecar injector: {e.Message}";
            return (Answer(uid, allowed: false, patch: null, message: message), AdmissionOutcome.Refused, message);
        }

        Remove(pod, "apiVersion");
        Remove(pod, "kind");
        Remove(original, "apiVersion");
        Remove(original, "kind");
        var patch = JsonPatch.Serialize(JsonPatch.Diff(original, pod));
        return (Answer(uid, allowed: true, patch: patch, message: null), AdmissionOutcome.Injected, where);
    }

    private static bool OptedIn(YamlMappingNode? metadata)
    {
        if (metadata is null)
        {
            return false;
        }

        return (Map(metadata, "labels") is { } labels && Str(labels, OptInKey) == "true")
            || (Map(metadata, "annotations") is { } annotations && Str(annotations, OptInKey) == "true");
    }

    private static byte[] Answer(string uid, bool allowed, byte[]? patch, string? message)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("apiVersion", "admission.k8s.io/v1");
            writer.WriteString("kind", "AdmissionReview");
            writer.WriteStartObject("response");
            writer.WriteString("uid", uid);
            writer.WriteBoolean("allowed", allowed);
            if (patch is not null)
            {
                writer.WriteString("patchType", "JSONPatch");
                writer.WriteBase64String("patch", patch);
            }

            if (message is not null)
            {
                writer.WriteStartObject("status");
                writer.WriteNumber("code", 403);
                writer.WriteString("reason", "Forbidden");
                writer.WriteString("message", message);
                writer.WriteEndObject();
            }

            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.ToArray();
    }
}
