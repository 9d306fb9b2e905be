using System.Text.Json.Nodes;
using Checkpoint.Deploy.Tests.Infrastructure;
using k8s;
using k8s.Models;

namespace Checkpoint.Deploy.Tests;

/// <summary>Every kustomization under deploy/ builds with kubectl, and what it renders is valid Kubernetes.</summary>
public sealed class KustomizeTests
{
    /// <summary>The kinds deploy/ may render, with their model types; CRDs (null) are checked as JSON.</summary>
    private static readonly Dictionary<string, Type?> KnownKinds = new()
    {
        ["v1/ServiceAccount"] = typeof(V1ServiceAccount),
        ["v1/PersistentVolume"] = typeof(V1PersistentVolume),
        ["v1/PersistentVolumeClaim"] = typeof(V1PersistentVolumeClaim),
        ["v1/Service"] = typeof(V1Service),
        ["rbac.authorization.k8s.io/v1/Role"] = typeof(V1Role),
        ["rbac.authorization.k8s.io/v1/RoleBinding"] = typeof(V1RoleBinding),
        ["batch/v1/Job"] = typeof(V1Job),
        ["monitoring.coreos.com/v1/PodMonitor"] = null,
        // deploy/injector (InjectorTests checks it further).
        ["v1/Namespace"] = typeof(V1Namespace),
        ["apps/v1/Deployment"] = typeof(V1Deployment),
        ["admissionregistration.k8s.io/v1/MutatingWebhookConfiguration"] = typeof(V1MutatingWebhookConfiguration),
        ["cert-manager.io/v1/Issuer"] = null,
        ["cert-manager.io/v1/Certificate"] = null,
        ["monitoring.coreos.com/v1/PrometheusRule"] = null,
        // Their pod templates parse strictly (CrdWorkloads_... below).
        [Workloads.JobSet] = null,
        [Workloads.PyTorchJob] = null,
    };

    public static TheoryData<string> Directories => new(Kustomize.Directories);

    [Fact]
    public void Deploy_HasTheExpectedKustomizations()
    {
        string[] expected =
        [
            "deploy/base", "deploy/examples/indexed-job", "deploy/examples/job-native-sidecar",
            "deploy/examples/job-regular-sidecar", "deploy/examples/jobset", "deploy/examples/pytorchjob",
            "deploy/observability", "deploy/storage/nfs",
        ];
        Assert.Subset(Kustomize.Directories.ToHashSet(), expected.ToHashSet());
    }

    [Theory]
    [MemberData(nameof(Directories))]
    public async Task KubectlKustomize_Builds(string directory)
    {
        var result = await Tool.RunAsync("kubectl", ["kustomize", directory]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("kind:", result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Directories))]
    public async Task EveryRenderedResource_ParsesStrictlyIntoItsKubernetesModelType(string directory)
    {
        var rendered = await Kustomize.BuildAsync(directory);
        var documents = Yaml.SplitDocuments(rendered);
        Assert.NotEmpty(documents);
        foreach (var text in documents)
        {
            var json = Yaml.Load(text);
            var key = $"{json["apiVersion"]}/{json["kind"]}";
            Assert.True(KnownKinds.TryGetValue(key, out var type), $"{directory} renders an unexpected {key}");
            var name = json["metadata"]?["name"]?.GetValue<string>();
            Assert.False(string.IsNullOrEmpty(name), $"{key} without a name in {directory}");
            if (type is null)
            {
                Assert.NotNull(json["spec"]);
                continue;
            }

            // strict: an unknown or misspelled field is an error, as `kubectl apply --validate=strict` would say.
            var model = Deserialize(type, text);
            var metadata = Assert.IsAssignableFrom<IMetadata<V1ObjectMeta>>(model);
            Assert.Equal(name, metadata.Metadata.Name);
        }
    }

    [Theory]
    [MemberData(nameof(Directories))]
    public async Task CrdWorkloads_PodTemplatesParseStrictly_AndUseOnlyFieldsTheirApiDefines(string directory)
    {
        foreach (var text in Yaml.SplitDocuments(await Kustomize.BuildAsync(directory)))
        {
            var root = Yaml.Root(text);
            var kind = Workloads.KindOf(root);
            if (kind is not (Workloads.JobSet or Workloads.PyTorchJob))
            {
                continue;
            }

            // Strict: a JobSet's child Job templates as V1JobTemplateSpec, a PyTorchJob's replica templates as V1PodTemplateSpec.
            var pods = Workloads.PodTemplates(directory, text).ToList();
            Assert.NotEmpty(pods);

            // Around the templates: only fields the CRD's API types define.
            var json = Yaml.Load(text);
            var shortKind = json["kind"]!.GetValue<string>();
            foreach (var (path, value) in Objects(json["spec"]!, shortKind + ".spec"))
            {
                if (Workloads.CrdFields.TryGetValue(path, out var allowed))
                {
                    foreach (var (field, _) in value.AsObject())
                    {
                        Assert.True(allowed.Contains(field), $"{directory}: {path}.{field} is not a field of {kind}");
                    }
                }
            }
        }
    }

    /// <summary>Every object under <paramref name="node"/> with its path: list items as name[], map values of pytorchReplicaSpecs as name.*.</summary>
    private static IEnumerable<(string Path, JsonNode Value)> Objects(JsonNode node, string path)
    {
        if (node is JsonObject obj)
        {
            yield return (path, obj);
            foreach (var (key, child) in obj)
            {
                if (child is null || key == "template")
                {
                    continue;
                }

                var childPath = path.EndsWith(".pytorchReplicaSpecs", StringComparison.Ordinal) ? path + ".*" : path + "." + key;
                foreach (var found in Objects(child, childPath))
                {
                    yield return found;
                }
            }
        }
        else if (node is JsonArray array)
        {
            foreach (var item in array.Where(i => i is not null))
            {
                foreach (var found in Objects(item!, path + "[]"))
                {
                    yield return found;
                }
            }
        }
    }

    private static object Deserialize(Type type, string text)
    {
        var method = typeof(KubernetesYaml).GetMethods()
            .Single(m => m.Name == nameof(KubernetesYaml.Deserialize) && m.IsGenericMethod
                && m.GetParameters() is [{ ParameterType: var p0 }, { ParameterType: var p1 }] && p0 == typeof(string) && p1 == typeof(bool));
        try
        {
            return method.MakeGenericMethod(type).Invoke(null, [text, true])!;
        }
        catch (System.Reflection.TargetInvocationException e) when (e.InnerException is not null)
        {
            throw new Xunit.Sdk.XunitException($"{type.Name} does not parse strictly: {e.InnerException.Message}\n{text}");
        }
    }

    internal static JsonNode? Kind(IEnumerable<JsonNode> documents, string kind) =>
        documents.SingleOrDefault(d => d["kind"]?.GetValue<string>() == kind);
}
