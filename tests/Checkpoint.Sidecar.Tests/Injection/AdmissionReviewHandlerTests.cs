using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Checkpoint.Sidecar.Injection;
using Checkpoint.TestSupport;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Sidecar.Tests.Injection;

public sealed class AdmissionReviewHandlerTests
{
    private static readonly InjectionOptions Options = new() { Image = "registry.example.com/platform/checkpoint-sidecar:0.2.0" };

    /// <summary>A pod of an Indexed Job as the API server hands it to webhooks: defaulted, with the ServiceAccount plugin's token volume.</summary>
    internal const string JobPod = """
        {
          "apiVersion": "v1", "kind": "Pod",
          "metadata": {
            "generateName": "train-dist-0-",
            "labels": { "batch.kubernetes.io/job-name": "train-dist", "checkpoint-sidecar/inject": "true" },
            "annotations": { "batch.kubernetes.io/job-completion-index": "0" }
          },
          "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "serviceAccountName": "checkpoint-sidecar",
            "containers": [ {
              "name": "trainer", "image": "registry.example.com/team/trainer:latest",
              "args": ["--epochs", "10"],
              "resources": { "limits": { "nvidia.com/gpu": "1" } },
              "volumeMounts": [ { "name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true } ]
            } ],
            "volumes": [ { "name": "kube-api-access-x7k2p", "projected": { "defaultMode": 420, "sources": [ { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } } ] } } ]
          }
        }
        """;

    [Fact]
    public void Review_OptedInPod_PatchGivesWhatInjectGives()
    {
        var response = Response(AdmissionReviewHandler.Review(Review(JobPod), Options).Response);
        Assert.Equal("uid-1", response["uid"]!.GetValue<string>());
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Equal("JSONPatch", response["patchType"]!.GetValue<string>());

        var patched = JsonPatchDocument.Apply(JsonNode.Parse(JobPod)!, JsonNode.Parse(Convert.FromBase64String(response["patch"]!.GetValue<string>()))!.AsArray());
        var injected = InjectedAsJson(JobPod);
        Assert.True(JsonNode.DeepEquals(injected, patched), $"patched:\n{patched}\ninject:\n{injected}");

        // Least privilege: the plugin's token is gone from the trainer, the sidecar has its own.
        var spec = patched["spec"]!;
        Assert.False(spec["automountServiceAccountToken"]!.GetValue<bool>());
        Assert.DoesNotContain("kube-api-access", spec["containers"]![0]!.ToJsonString(), StringComparison.Ordinal);
        Assert.DoesNotContain("kube-api-access", spec["volumes"]!.ToJsonString(), StringComparison.Ordinal);
        var sidecar = spec["initContainers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == "checkpoint-sidecar")!;
        Assert.Contains(sidecar["volumeMounts"]!.AsArray(), m => m!["name"]!.GetValue<string>() == "checkpoint-sidecar-token"
            && m["mountPath"]!.GetValue<string>() == "/var/run/secrets/kubernetes.io/serviceaccount" && m["readOnly"]!.GetValue<bool>());
        // Types survive the trip through YAML: numbers stay numbers, strings that look like numbers stay strings.
        Assert.Equal(JsonValueKind.Number, sidecar["ports"]![0]!["containerPort"]!.GetValueKind());
        Assert.Equal("30", sidecar["env"]!.AsArray().Single(e => e!["name"]!.GetValue<string>() == "CHECKPOINT_GRACE_PERIOD_SECONDS")!["value"]!.GetValue<string>());
        Assert.Equal("metadata.labels['batch.kubernetes.io/job-name']",
            sidecar["env"]!.AsArray().Single(e => e!["name"]!.GetValue<string>() == "CHECKPOINT_JOB_NAME")!["valueFrom"]!["fieldRef"]!["fieldPath"]!.GetValue<string>());
        Assert.Equal("1", spec["containers"]![0]!["resources"]!["limits"]!["nvidia.com/gpu"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("""{"checkpoint-sidecar/inject": "false"}""", "{}")]
    [InlineData("{}", "{}")]
    [InlineData("""{"checkpoint-sidecar/inject": "true"}""", """{"checkpoint-sidecar/injected": "true"}""")]
    public void Review_NotOptedInOrInjectedAlready_AllowedWithoutPatch(string labels, string annotations)
    {
        var pod = $$"""{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {{labels}}, "annotations": {{annotations}}}, "spec": {"containers": [{"name": "t", "image": "t"}]} }""";
        var response = Response(AdmissionReviewHandler.Review(Review(pod), Options).Response);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(response["patch"]);
        Assert.Null(response["patchType"]);
    }

    [Fact]
    public void Review_OptInByAnnotation_Injects()
    {
        var pod = """{"metadata": {"name": "p", "annotations": {"checkpoint-sidecar/inject": "true"}}, "spec": {"containers": [{"name": "t", "image": "t"}]}}""";
        var (answer, outcome, _) = AdmissionReviewHandler.Review(Review(pod), Options);
        Assert.Equal(AdmissionOutcome.Injected, outcome);
        Assert.NotNull(Response(answer)["patch"]);
    }

    [Fact]
    public void Review_PodThatCannotBeInjected_IsDeniedWithInjectsMessage()
    {
        var pod = """{"metadata": {"name": "p", "labels": {"checkpoint-sidecar/inject": "true"}}, "spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}}""";
        var response = Response(AdmissionReviewHandler.Review(Review(pod), Options).Response);
        Assert.False(response["allowed"]!.GetValue<bool>());
        Assert.Null(response["patch"]);
        var message = response["status"]!["message"]!.GetValue<string>();
        Assert.Contains("pod training/p", message, StringComparison.Ordinal);
        Assert.Contains("which container is the trainer is ambiguous (a, b)", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""{"request": {}}""")]
    [InlineData("[]")]
    public void Review_NotAnAdmissionReview_Throws(string body)
    {
        Assert.ThrowsAny<JsonException>(() => AdmissionReviewHandler.Review(Encoding.UTF8.GetBytes(body), Options));
    }

    internal static byte[] Review(string pod) => Encoding.UTF8.GetBytes($$"""
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
          "uid": "uid-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
          "namespace": "training", "operation": "CREATE", "object": {{pod}} } }
        """);

    private static JsonNode Response(byte[] answer)
    {
        var review = JsonNode.Parse(answer)!;
        Assert.Equal("admission.k8s.io/v1", review["apiVersion"]!.GetValue<string>());
        Assert.Equal("AdmissionReview", review["kind"]!.GetValue<string>());
        return review["response"]!;
    }

    /// <summary>What `inject` makes of the same pod (JSON is YAML), as JSON.</summary>
    private static JsonNode InjectedAsJson(string podJson)
    {
        var yaml = ManifestInjector.InjectStream(podJson, Options);
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            JsonYaml.Write(writer, stream.Documents[0].RootNode);
        }

        return JsonNode.Parse(buffer.ToArray())!;
    }
}
