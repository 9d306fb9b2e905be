using Checkpoint.Sidecar.Injection;
using Checkpoint.TestSupport;

namespace Checkpoint.Sidecar.Tests.Injection;

/// <summary>
/// <c>inject</c> against golden files: golden/&lt;kind&gt;.in.yaml (its first line "# args: ..." holds the
/// flags) must give golden/&lt;kind&gt;.out.yaml byte for byte. After a deliberate change, regenerate with
/// CHECKPOINT_UPDATE_GOLDEN=1 and review the diff.
/// </summary>
public sealed class ManifestInjectorTests
{
    private static readonly string GoldenDirectory = Path.Combine(AppContext.BaseDirectory, "Injection", "golden");

    private static readonly List<string> KindNames =
        Directory.EnumerateFiles(GoldenDirectory, "*.in.yaml").Select(f => Path.GetFileName(f)[..^".in.yaml".Length]).Order(StringComparer.Ordinal).ToList();

    public static TheoryData<string> Kinds => new(KindNames);

    [Fact]
    public void Golden_CoversEveryKind()
    {
        Assert.Subset(KindNames.ToHashSet(),
            new HashSet<string> { "job", "indexed-job", "jobset", "pytorchjob", "trainingruntime", "deployment", "statefulset", "pod" });
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void InjectStream_GivesTheGoldenOutput(string kind)
    {
        var (input, options) = Input(kind);
        var output = ManifestInjector.InjectStream(input, options);
        var goldenPath = Path.Combine(GoldenDirectory, kind + ".out.yaml");
        if (Environment.GetEnvironmentVariable("CHECKPOINT_UPDATE_GOLDEN") == "1")
        {
            File.WriteAllText(Path.Combine(RepoPaths.Root, "tests", "Checkpoint.Sidecar.Tests", "Injection", "golden", kind + ".out.yaml"), output);
            return;
        }

        Assert.Equal(File.ReadAllText(goldenPath), output);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void InjectStream_AppliedTwice_ChangesNothing(string kind)
    {
        var (input, options) = Input(kind);
        var once = ManifestInjector.InjectStream(input, options);
        Assert.NotEqual(input, once);
        Assert.Equal(once, ManifestInjector.InjectStream(once, options));
    }

    [Fact]
    public void InjectStream_OtherKinds_PassThroughByteForByte()
    {
        const string input = "# settings\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: a }   # odd spacing kept\ndata: { x: \"1\" }\n---\napiVersion: v1\nkind: Service\nmetadata:\n    name: b\n";
        Assert.Equal(input, ManifestInjector.InjectStream(input, new InjectionOptions()));
    }

    [Fact]
    public void InjectStream_JobStream_KeepsTheConfigMapAsItWas()
    {
        var (input, options) = Input("job");
        var output = ManifestInjector.InjectStream(input, options);
        var configMap = input[input.IndexOf("---\n# Passes through", StringComparison.Ordinal)..];
        Assert.EndsWith(configMap, output, StringComparison.Ordinal);
        Assert.StartsWith("# args:", output, StringComparison.Ordinal);
    }

    [Fact]
    public void InjectStream_SharedPyTorchJobTemplate_InjectedOnceAndStillAnAlias()
    {
        var (input, options) = Input("pytorchjob");
        var output = ManifestInjector.InjectStream(input, options);
        Assert.Contains("template: *pod-template", output, StringComparison.Ordinal);
        Assert.Single(AllIndexesOf(output, "- name: checkpoint-sidecar\n"));
    }

    public static TheoryData<string, string, string> Refusals => new()
    {
        {
            "no containers",
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: []\n",
            "document 1 (Job/j) at spec.template.spec.containers: no containers"
        },
        {
            "name clash",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - {name: trainer, image: t}\n    - {name: checkpoint-sidecar, image: s}\n",
            "document 1 (Pod/p).spec: a container is already named 'checkpoint-sidecar'"
        },
        {
            "ambiguous trainer",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers:\n        - {name: a, image: a}\n        - {name: b, image: b}\n",
            "document 1 (Deployment/d) at spec.template.spec.containers: which container is the trainer is ambiguous (a, b); name it with --trainer-container NAME or the pod template annotation checkpoint-sidecar/trainer-container"
        },
        {
            "trainer not there",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {checkpoint-sidecar/trainer-container: main}\nspec:\n  containers:\n    - {name: trainer, image: t}\n",
            "document 1 (Pod/p).spec.containers: no container named 'main'"
        },
        {
            "volume clash",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - {name: trainer, image: t}\n  volumes:\n    - {name: checkpoint-staging, emptyDir: {}}\n",
            "document 1 (Pod/p).spec.volumes: a volume is already named 'checkpoint-staging'"
        },
        {
            "trainer preStop",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: trainer\n      image: t\n      lifecycle: {preStop: {exec: {command: [x]}}}\n",
            "document 1 (Pod/p).spec.containers[trainer].lifecycle.preStop: the trainer has a preStop hook of its own"
        },
        {
            "port clash",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: trainer\n      image: t\n      ports: [{containerPort: 9400}]\n",
            "uses port 9400, the sidecar's metrics port; choose another with --metrics-port"
        },
        {
            "no job name",
            "apiVersion: v1\nkind: Pod\nmetadata: {generateName: p-}\nspec:\n  containers:\n    - {name: trainer, image: t}\n",
            "no job name to give CHECKPOINT_JOB_NAME"
        },
        {
            "TrainJob",
            "apiVersion: trainer.kubeflow.org/v1alpha1\nkind: TrainJob\nmetadata: {name: t}\nspec:\n  runtimeRef: {name: torch-distributed}\n",
            "document 1 (TrainJob/t): a TrainJob has no pod template to add a container to"
        },
        {
            "second document",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {}\n",
            "document 2 (Job/j) at spec.template: no pod template"
        },
        {
            "not YAML",
            "apiVersion: v1\nkind: [\n",
            "not valid YAML: line"
        },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void InjectStream_WhatItCannotUnderstand_IsRefusedWithDocumentAndPath(string what, string yaml, string message)
    {
        var e = Assert.Throws<InjectionException>(() => ManifestInjector.InjectStream(yaml, new InjectionOptions()));
        Assert.True(e.Message.Contains(message, StringComparison.Ordinal), $"{what}: {e.Message}");
    }

    [Fact]
    public void InjectStream_TrainJobRefusal_SaysWhatToDoInstead()
    {
        var e = Assert.Throws<InjectionException>(() => ManifestInjector.InjectStream(
            "apiVersion: trainer.kubeflow.org/v1alpha1\nkind: TrainJob\nmetadata: {name: t}\nspec: {}\n", new InjectionOptions()));
        Assert.Contains("clustertrainingruntime", e.Message, StringComparison.Ordinal);
        Assert.Contains("deploy/injector", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--mode", "sideways", "--mode must be native or regular")]
    [InlineData("--image", "bad image", "--image: 'bad image' is not a valid value")]
    [InlineData("--grace-period", "0", "--grace-period must be a whole number from 1")]
    [InlineData("--storage-claim", "Not_A_Name", "--storage-claim")]
    public void Parse_BadFlag_NamesIt(string flag, string value, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => InjectionOptions.Parse([flag, value], (_, _) => 0));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    internal static (string Input, InjectionOptions Options) Input(string kind)
    {
        var input = File.ReadAllText(Path.Combine(GoldenDirectory, kind + ".in.yaml"));
        var firstLine = input[..input.IndexOf('\n', StringComparison.Ordinal)];
        Assert.StartsWith("# args:", firstLine, StringComparison.Ordinal);
        var args = firstLine["# args:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (input, InjectionOptions.Parse(args, (_, _) => 0));
    }

    private static List<int> AllIndexesOf(string text, string value)
    {
        var found = new List<int>();
        for (var i = text.IndexOf(value, StringComparison.Ordinal); i >= 0; i = text.IndexOf(value, i + 1, StringComparison.Ordinal))
        {
            found.Add(i);
        }

        return found;
    }
}
