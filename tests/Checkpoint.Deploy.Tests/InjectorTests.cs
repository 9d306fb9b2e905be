using System.Text.Json.Nodes;
using Checkpoint.Deploy.Tests.Infrastructure;
using k8s;
using k8s.Models;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// deploy/injector renders into the resources a mutating webhook needs, and what `inject` writes
/// (the golden outputs of tests/Checkpoint.Sidecar.Tests/Injection) is valid Kubernetes: every
/// document parses strictly (an unknown or misspelt field is an error) into its model type, and the pod
/// templates inside CRDs parse strictly as V1JobTemplateSpec / V1PodTemplateSpec.
/// </summary>
public sealed class InjectorTests
{
    private const string Directory = "deploy/injector";

    private static readonly string GoldenDirectory = Path.Combine(RepoPaths.Root, "tests", "Checkpoint.Sidecar.Tests", "Injection", "golden");

    public static TheoryData<string> GoldenOutputs => new(
        System.IO.Directory.EnumerateFiles(GoldenDirectory, "*.out.yaml").Select(Path.GetFileName).Order(StringComparer.Ordinal).Select(f => f!));

    [Fact]
    public async Task Kustomize_RendersTheWebhookItsServiceAndCertificate()
    {
        var documents = await Kustomize.BuildDocumentsAsync(Directory);
        var kinds = documents.Select(d => $"{d["apiVersion"]}/{d["kind"]}").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(
            [
                "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration", "apps/v1/Deployment", "cert-manager.io/v1/Certificate",
                "cert-manager.io/v1/Issuer", "v1/Namespace", "v1/Service",
            ],
            kinds);
        var rendered = Yaml.SplitDocuments(await Kustomize.BuildAsync(Directory));
        var deployment = KubernetesYaml.Deserialize<V1Deployment>(rendered.Single(t => t.Contains("kind: Deployment", StringComparison.Ordinal)), strict: true);
        var service = KubernetesYaml.Deserialize<V1Service>(rendered.Single(t => t.Contains("kind: Service", StringComparison.Ordinal)), strict: true);
        var webhooks = KubernetesYaml.Deserialize<V1MutatingWebhookConfiguration>(
            rendered.Single(t => t.Contains("kind: MutatingWebhookConfiguration", StringComparison.Ordinal)), strict: true);
        var certificate = KustomizeTests.Kind(documents, "Certificate")!;

        // The injector runs the sidecar image as `webhook`, with the certificate's Secret mounted where its flags say.
        var pod = deployment.Spec.Template.Spec;
        var injector = Assert.Single(pod.Containers);
        Assert.Equal("webhook", injector.Args[0]);
        Assert.StartsWith("registry.example.com/platform/checkpoint-sidecar:", injector.Image, StringComparison.Ordinal);
        var tlsMount = Assert.Single(injector.VolumeMounts);
        Assert.Contains($"--tls-cert={tlsMount.MountPath}/tls.crt", injector.Args);
        Assert.Contains($"--tls-key={tlsMount.MountPath}/tls.key", injector.Args);
        Assert.Equal(certificate["spec"]!["secretName"]!.GetValue<string>(), pod.Volumes.Single(v => v.Name == tlsMount.Name).Secret.SecretName);
        Assert.False(pod.AutomountServiceAccountToken);
        Assert.Equal("HTTPS", injector.ReadinessProbe.HttpGet.Scheme);
        Assert.Equal("/healthz", injector.ReadinessProbe.HttpGet.Path);

        // The API server reaches it through the Service, at /mutate, trusting cert-manager's CA.
        var webhook = Assert.Single(webhooks.Webhooks);
        Assert.Equal(service.Metadata.Name, webhook.ClientConfig.Service.Name);
        Assert.Equal(service.Metadata.NamespaceProperty, webhook.ClientConfig.Service.NamespaceProperty);
        Assert.Equal("/mutate", webhook.ClientConfig.Service.Path);
        Assert.Equal(webhook.ClientConfig.Service.Port, service.Spec.Ports.Single().Port);
        Assert.Contains(certificate["spec"]!["dnsNames"]!.AsArray(), n => n!.GetValue<string>() == $"{service.Metadata.Name}.{service.Metadata.NamespaceProperty}.svc");
        Assert.Equal($"{certificate["metadata"]!["namespace"]}/{certificate["metadata"]!["name"]}", webhooks.Metadata.Annotations["cert-manager.io/inject-ca-from"]);

        // Only opted-in pods in opted-in namespaces; the injector's opt-in key is checkpoint-sidecar/inject.
        Assert.Equal(["v1"], webhook.AdmissionReviewVersions);
        Assert.Equal("None", webhook.SideEffects);
        Assert.Equal("Fail", webhook.FailurePolicy);
        Assert.Equal("true", webhook.ObjectSelector.MatchLabels["checkpoint-sidecar/inject"]);
        Assert.Equal("enabled", webhook.NamespaceSelector.MatchLabels["checkpoint-sidecar/injection"]);
        var rule = Assert.Single(webhook.Rules);
        Assert.Equal(["pods"], rule.Resources);
        Assert.Equal(["CREATE"], rule.Operations);
    }

    [Theory]
    [MemberData(nameof(GoldenOutputs))]
    public void InjectOutput_ParsesStrictlyIntoKubernetesModels(string file)
    {
        var pods = 0;
        foreach (var text in Yaml.SplitDocuments(File.ReadAllText(Path.Combine(GoldenDirectory, file))))
        {
            var root = Yaml.Root(text);
            var kind = $"{Yaml.Scalar(root, "apiVersion")}/{Yaml.Scalar(root, "kind")}";
            switch (kind)
            {
                case "batch/v1/Job":
                    pods += Sidecars(Strict<V1Job>(text).Spec.Template.Spec);
                    break;
                case "apps/v1/Deployment":
                    pods += Sidecars(Strict<V1Deployment>(text).Spec.Template.Spec);
                    break;
                case "apps/v1/StatefulSet":
                    pods += Sidecars(Strict<V1StatefulSet>(text).Spec.Template.Spec);
                    break;
                case "v1/Pod":
                    pods += Sidecars(Strict<V1Pod>(text).Spec);
                    break;
                case "v1/ConfigMap":
                    Strict<V1ConfigMap>(text);
                    break;
                case "jobset.x-k8s.io/v1alpha2/JobSet":
                    pods += ReplicatedJobs(Yaml.Child(root, "spec")!);
                    break;
                case "trainer.kubeflow.org/v1alpha1/ClusterTrainingRuntime":
                    pods += ReplicatedJobs(Yaml.Child(root, "spec", "template", "spec")!);
                    break;
                case "kubeflow.org/v1/PyTorchJob":
                    foreach (var (_, replica) in ((YamlMappingNode)Yaml.Child(root, "spec", "pytorchReplicaSpecs")!).Children)
                    {
                        pods += Sidecars(Strict<V1PodTemplateSpec>(Yaml.Text(Yaml.Child((YamlMappingNode)replica, "template")!)).Spec);
                    }

                    break;
                default:
                    Assert.Fail($"{file}: a {kind} the test does not know");
                    break;
            }
        }

        Assert.True(pods > 0, $"{file}: no injected pod template");
    }

    private static int ReplicatedJobs(YamlNode spec)
    {
        var injected = 0;
        foreach (var job in ((YamlSequenceNode)Yaml.Child((YamlMappingNode)spec, "replicatedJobs")!).Children.Cast<YamlMappingNode>())
        {
            injected += Sidecars(Strict<V1JobTemplateSpec>(Yaml.Text(Yaml.Child(job, "template")!)).Spec.Template.Spec);
        }

        return injected;
    }

    /// <summary>1 when the pod spec carries the sidecar with the least-privilege token layout, 0 when it was left alone.</summary>
    private static int Sidecars(V1PodSpec spec)
    {
        var sidecar = (spec.InitContainers ?? []).Concat(spec.Containers).SingleOrDefault(c => c.Name == "checkpoint-sidecar");
        if (sidecar is null)
        {
            return 0;
        }

        Assert.False(spec.AutomountServiceAccountToken);
        var token = spec.Volumes.Single(v => v.Name == "checkpoint-sidecar-token").Projected.Sources;
        Assert.Equal("token", token[0].ServiceAccountToken.Path);
        Assert.Equal(3600, token[0].ServiceAccountToken.ExpirationSeconds);
        Assert.Equal("kube-root-ca.crt", token[1].ConfigMap.Name);
        Assert.Equal("ca.crt", token[1].ConfigMap.Items.Single().Key);
        Assert.Equal("namespace", token[2].DownwardAPI.Items.Single().Path);
        foreach (var container in (spec.InitContainers ?? []).Concat(spec.Containers))
        {
            var mounts = container.VolumeMounts ?? [];
            Assert.Equal(container == sidecar, mounts.Any(m => m.Name == "checkpoint-sidecar-token"
                && m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && m.ReadOnlyProperty == true));
        }

        return 1;
    }

    private static T Strict<T>(string text)
    {
        try
        {
            return KubernetesYaml.Deserialize<T>(text, strict: true);
        }
        catch (Exception e) when (e is YamlDotNet.Core.YamlException or FormatException or InvalidOperationException)
        {
            throw new Xunit.Sdk.XunitException($"{typeof(T).Name} does not parse strictly: {e.Message}\n{text}");
        }
    }
}
