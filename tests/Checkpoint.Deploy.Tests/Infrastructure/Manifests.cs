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

    /// <summary>The sidecar: a regular container, or a native sidecar (an init container).</summary>
    public static V1Container Sidecar(V1Job job)
    {
        var spec = job.Spec.Template.Spec;
        var all = (spec.Containers ?? []).Concat(spec.InitContainers ?? []).Where(c => c.Name == SidecarName).ToList();
        return Assert.Single(all);
    }

    public static bool IsNativeSidecar(V1Job job) =>
        job.Spec.Template.Spec.InitContainers?.Any(c => c.Name == SidecarName) == true;

    public static V1Container Trainer(V1Job job) =>
        Assert.Single(job.Spec.Template.Spec.Containers, c => c.Name == TrainerName);

    public static string? Env(V1Container container, string name) =>
        container.Env?.SingleOrDefault(e => e.Name == name)?.Value;

    public static V1VolumeMount Mount(V1Container container, string volume) =>
        Assert.Single(container.VolumeMounts ?? [], m => m.Name == volume);

    public static V1Volume Volume(V1Job job, string name) =>
        Assert.Single(job.Spec.Template.Spec.Volumes ?? [], v => v.Name == name);

    /// <summary>The volume mounted by <paramref name="container"/> at the directory holding <paramref name="path"/> (or at the path itself).</summary>
    public static V1VolumeMount MountHolding(V1Container container, string path) =>
        Assert.Single(container.VolumeMounts ?? [], m => path == m.MountPath || path.StartsWith(m.MountPath.TrimEnd('/') + "/", StringComparison.Ordinal));
}
