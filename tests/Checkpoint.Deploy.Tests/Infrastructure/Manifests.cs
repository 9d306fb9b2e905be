using k8s;
using k8s.Models;

namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>Typed access to the rendered examples.</summary>
internal static class Manifests
{
    public const string SidecarName = "checkpoint-sidecar";
    public const string TrainerName = "trainer";

    public static async Task<List<T>> ResourcesAsync<T>(string directory, string kind)
    {
        var rendered = await Kustomize.BuildAsync(directory);
        return Yaml.SplitDocuments(rendered)
            .Where(text => Yaml.Load(text)["kind"]?.GetValue<string>() == kind)
            .Select(text => KubernetesYaml.Deserialize<T>(text, strict: true))
            .ToList();
    }

    public static async Task<V1Job> JobAsync(string directory) => Assert.Single(await ResourcesAsync<V1Job>(directory, "Job"));

    /// <summary>Every pod template of the example (a Job's, a JobSet's child Jobs', a PyTorchJob's replicas'), at least one.</summary>
    public static async Task<List<WorkloadPod>> PodsAsync(string directory)
    {
        var pods = await Workloads.PodTemplatesAsync(directory);
        Assert.True(pods.Count > 0, $"{directory} renders no pod template");
        return pods;
    }

    /// <summary>The sidecar: a regular container, or a native sidecar (an init container).</summary>
    public static V1Container Sidecar(V1PodSpec spec)
    {
        var all = (spec.Containers ?? []).Concat(spec.InitContainers ?? []).Where(c => c.Name == SidecarName).ToList();
        return Assert.Single(all);
    }

    public static V1Container Sidecar(V1Job job) => Sidecar(job.Spec.Template.Spec);

    public static bool IsNativeSidecar(V1PodSpec spec) => spec.InitContainers?.Any(c => c.Name == SidecarName) == true;

    public static bool IsNativeSidecar(V1Job job) => IsNativeSidecar(job.Spec.Template.Spec);

    /// <summary>The trainer: the one regular container that is not the sidecar ("trainer"; "pytorch" in a PyTorchJob).</summary>
    public static V1Container Trainer(V1PodSpec spec) =>
        Assert.Single(spec.Containers, c => c.Name != SidecarName);

    public static V1Container Trainer(V1Job job) => Trainer(job.Spec.Template.Spec);

    public static string? Env(V1Container container, string name) =>
        container.Env?.SingleOrDefault(e => e.Name == name)?.Value;

    public static V1EnvVar? EnvVar(V1Container container, string name) =>
        container.Env?.SingleOrDefault(e => e.Name == name);

    public static V1VolumeMount Mount(V1Container container, string volume) =>
        Assert.Single(container.VolumeMounts ?? [], m => m.Name == volume);

    public static V1Volume Volume(V1PodSpec spec, string name) =>
        Assert.Single(spec.Volumes ?? [], v => v.Name == name);

    public static V1Volume Volume(V1Job job, string name) => Volume(job.Spec.Template.Spec, name);

    /// <summary>The volume mounted by <paramref name="container"/> at the directory holding <paramref name="path"/> (or at the path itself).</summary>
    public static V1VolumeMount MountHolding(V1Container container, string path) =>
        Assert.Single(container.VolumeMounts ?? [], m => path == m.MountPath || path.StartsWith(m.MountPath.TrimEnd('/') + "/", StringComparison.Ordinal));
}
