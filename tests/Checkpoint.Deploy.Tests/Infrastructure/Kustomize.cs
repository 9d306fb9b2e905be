using System.Text.Json.Nodes;

namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>The kustomize directories under deploy/ and what `kubectl kustomize` renders from them.</summary>
internal static class Kustomize
{
    /// <summary>Every directory under deploy/ with a kustomization, relative to the repository root.</summary>
    public static IReadOnlyList<string> Directories { get; } =
        Directory.EnumerateFiles(DeployPaths.Deploy, "kustomization.yaml", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(RepoPaths.Root, Path.GetDirectoryName(f)!))
            .Order(StringComparer.Ordinal)
            .ToList();

    public static readonly string[] Examples =
    [
        "deploy/examples/job-regular-sidecar",
        "deploy/examples/job-native-sidecar",
        "deploy/examples/indexed-job",
        "deploy/examples/jobset",
        "deploy/examples/pytorchjob",
    ];

    /// <summary>The examples whose pods form one job spanning many pods, sharing one job directory.</summary>
    public static readonly string[] MultiPodExamples =
    [
        "deploy/examples/indexed-job",
        "deploy/examples/jobset",
        "deploy/examples/pytorchjob",
    ];

    private static readonly Dictionary<string, Task<string>> Rendered = [];

    /// <summary>`kubectl kustomize dir`, once per directory per test run; fails the test with kubectl's message.</summary>
    public static Task<string> BuildAsync(string directory)
    {
        lock (Rendered)
        {
            if (!Rendered.TryGetValue(directory, out var task))
            {
                task = RenderAsync(directory);
                Rendered[directory] = task;
            }

            return task;
        }
    }

    public static async Task<List<JsonNode>> BuildDocumentsAsync(string directory) => Yaml.LoadAll(await BuildAsync(directory));

    private static async Task<string> RenderAsync(string directory)
    {
        var result = await Tool.RunAsync("kubectl", ["kustomize", directory]);
        Assert.True(result.ExitCode == 0, result.ToString());
        return result.Stdout;
    }
}
