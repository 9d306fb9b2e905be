using k8s;
using k8s.Models;
using YamlDotNet.RepresentationModel;

namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>
/// One pod template of a rendered example, parsed strictly (unknown fields are errors) as
/// V1PodTemplateSpec: a batch Job's, a JobSet child Job's, or a PyTorchJob replica's.
/// </summary>
/// <param name="Example">The kustomize directory.</param>
/// <param name="Kind">apiVersion/kind of the workload that owns the template.</param>
/// <param name="Name">The workload's metadata.name.</param>
/// <param name="Where">Where the template sits in the workload, for messages.</param>
/// <param name="Job">The Job spec around the template (batch Job, JobSet child Job); null for a PyTorchJob replica.</param>
/// <param name="Pods">How many pods this template makes.</param>
internal sealed record WorkloadPod(string Example, string Kind, string Name, string Where, V1PodTemplateSpec Template, V1JobSpec? Job, int Pods)
{
    public V1PodSpec Spec => Template.Spec;

    public override string ToString() => $"{Example} ({Kind} {Name}, {Where})";
}

/// <summary>The workload kinds the examples use, and the pod templates inside each.</summary>
internal static class Workloads
{
    public const string BatchJob = "batch/v1/Job";
    public const string JobSet = "jobset.x-k8s.io/v1alpha2/JobSet";
    public const string PyTorchJob = "kubeflow.org/v1/PyTorchJob";

    /// <summary>
    /// The label each kind's controller puts on every pod of one job, the same value for all of them,
    /// across replacements and restarts: what CHECKPOINT_JOB_NAME is derived from.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> JobNameLabel = new Dictionary<string, string>
    {
        // Job controller, Kubernetes 1.27+ (it also sets the legacy job-name): the Job's name.
        [BatchJob] = "batch.kubernetes.io/job-name",
        // kubernetes-sigs/jobset api/jobset/v1alpha2 JobSetNameKey, on child Jobs and their pods: the JobSet's name.
        [JobSet] = "jobset.sigs.k8s.io/jobset-name",
        // kubeflow/training-operator pkg/apis/kubeflow.org/v1 JobNameLabel, on every replica's pods: the job's name.
        [PyTorchJob] = "training.kubeflow.org/job-name",
    };

    /// <summary>
    /// Fields the CRDs' API types define outside the pod templates (JobSet v1alpha2 jobset_types.go;
    /// training operator kubeflow.org/v1 pytorch_types.go and common_types.go), leaving out the ones
    /// JobSet added lately (groupName, volumeClaimPolicies, onJobFailureMessagePatterns) so that the
    /// examples keep working with older controllers. The
    /// pod templates themselves are parsed strictly as Kubernetes types; this catches a misspelt field
    /// around them, which the API server would drop (pruning) or refuse (strict field validation).
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string[]> CrdFields = new Dictionary<string, string[]>
    {
        ["JobSet.spec"] = ["replicatedJobs", "network", "successPolicy", "failurePolicy", "startupPolicy", "suspend", "coordinator", "managedBy", "ttlSecondsAfterFinished"],
        ["JobSet.spec.replicatedJobs[]"] = ["name", "template", "replicas", "dependsOn"],
        ["JobSet.spec.network"] = ["enableDNSHostnames", "subdomain", "publishNotReadyAddresses"],
        ["JobSet.spec.failurePolicy"] = ["maxRestarts", "restartStrategy", "rules"],
        ["JobSet.spec.failurePolicy.rules[]"] = ["name", "action", "onJobFailureReasons", "targetReplicatedJobs"],
        ["PyTorchJob.spec"] = ["runPolicy", "elasticPolicy", "pytorchReplicaSpecs", "nprocPerNode"],
        ["PyTorchJob.spec.runPolicy"] = ["cleanPodPolicy", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit", "schedulingPolicy"],
        ["PyTorchJob.spec.pytorchReplicaSpecs.*"] = ["replicas", "template", "restartPolicy"],
    };

    /// <summary>Every pod template the example renders, in document order.</summary>
    public static async Task<List<WorkloadPod>> PodTemplatesAsync(string example)
    {
        var pods = new List<WorkloadPod>();
        foreach (var text in Yaml.SplitDocuments(await Kustomize.BuildAsync(example)))
        {
            pods.AddRange(PodTemplates(example, text));
        }

        return pods;
    }

    /// <summary>The workload documents (with pod templates) the example renders.</summary>
    public static async Task<List<(string Kind, YamlMappingNode Root)>> WorkloadsAsync(string example) =>
        Yaml.SplitDocuments(await Kustomize.BuildAsync(example))
            .Select(Yaml.Root)
            .Select(root => (Kind: KindOf(root), Root: root))
            .Where(w => JobNameLabel.ContainsKey(w.Kind))
            .ToList();

    public static string KindOf(YamlMappingNode root) => $"{Yaml.Scalar(root, "apiVersion")}/{Yaml.Scalar(root, "kind")}";

    /// <summary>The pod templates of one rendered document; none for a kind that has none.</summary>
    public static IEnumerable<WorkloadPod> PodTemplates(string example, string documentText)
    {
        var root = Yaml.Root(documentText);
        var kind = KindOf(root);
        var name = Yaml.Scalar(root, "metadata", "name") ?? "";
        switch (kind)
        {
            case BatchJob:
            {
                var job = KubernetesYaml.Deserialize<V1Job>(documentText, strict: true);
                yield return new WorkloadPod(example, kind, name, "spec.template", job.Spec.Template, job.Spec, PodCount(job.Spec));
                break;
            }

            case JobSet:
            {
                var replicatedJobs = (YamlSequenceNode)Yaml.Child(root, "spec", "replicatedJobs")!;
                for (var i = 0; i < replicatedJobs.Children.Count; i++)
                {
                    var replicatedJob = (YamlMappingNode)replicatedJobs.Children[i];
                    var where = $"spec.replicatedJobs[{i}] ({Yaml.Scalar(replicatedJob, "name")})";
                    var template = Strict<V1JobTemplateSpec>(Yaml.Child(replicatedJob, "template")!, $"{name} {where}.template");
                    var replicas = int.Parse(Yaml.Scalar(replicatedJob, "replicas") ?? "1", System.Globalization.CultureInfo.InvariantCulture);
                    yield return new WorkloadPod(example, kind, name, where + ".template.spec.template", template.Spec.Template, template.Spec, replicas * PodCount(template.Spec));
                }

                break;
            }

            case PyTorchJob:
            {
                var replicaSpecs = (YamlMappingNode)Yaml.Child(root, "spec", "pytorchReplicaSpecs")!;
                foreach (var (key, value) in replicaSpecs.Children)
                {
                    var replicaType = ((YamlScalarNode)key).Value!;
                    var where = $"spec.pytorchReplicaSpecs.{replicaType}.template";
                    var template = Strict<V1PodTemplateSpec>(Yaml.Child((YamlMappingNode)value, "template")!, $"{name} {where}");
                    var replicas = int.Parse(Yaml.Scalar((YamlMappingNode)value, "replicas") ?? "1", System.Globalization.CultureInfo.InvariantCulture);
                    yield return new WorkloadPod(example, kind, name, where, template, null, replicas);
                }

                break;
            }
        }
    }

    private static int PodCount(V1JobSpec job) => job.Parallelism ?? 1;

    /// <summary>A YAML subtree deserialized strictly into a Kubernetes model type.</summary>
    private static T Strict<T>(YamlNode node, string what)
    {
        var text = Yaml.Text(node);
        try
        {
            return KubernetesYaml.Deserialize<T>(text, strict: true);
        }
        catch (Exception e) when (e is YamlDotNet.Core.YamlException or InvalidOperationException)
        {
            throw new Xunit.Sdk.XunitException($"{what} does not parse strictly as {typeof(T).Name}: {e.Message}\n{text}");
        }
    }
}
