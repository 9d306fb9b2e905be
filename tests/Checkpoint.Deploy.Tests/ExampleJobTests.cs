using System.Text.RegularExpressions;
using Checkpoint.Deploy.Tests.Infrastructure;
using k8s.Models;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// Each example Job, as kubectl renders it, gives the sidecar what the README says it needs and the
/// trainer what it shares with the sidecar; preemptions do not count as failures.
/// </summary>
public sealed class ExampleJobTests
{
    public static TheoryData<string> Examples => new(Kustomize.Examples);

    /// <summary>Variables the README's configuration table marks "(required)", read from the README itself.</summary>
    private static List<string> RequiredByReadme()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var required = Regex.Matches(readme, @"^\| `(CHECKPOINT_[A-Z_]+)` \| \(required\) \|", RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("CHECKPOINT_STAGING_DIR", required);
        Assert.Contains("CHECKPOINT_STORAGE_DIR", required);
        return required;
    }

    private static HashSet<string> DocumentedByReadme()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        return Regex.Matches(readme, @"`((?:CHECKPOINT|POD)_[A-Z_]+)`").Select(m => m.Groups[1].Value).ToHashSet();
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Sidecar_HasTheEnvironmentTheReadmeAsksFor_ConsistentWithItsMountsAndPorts(string example)
    {
        var job = await Manifests.JobAsync(example);
        var sidecar = Manifests.Sidecar(job);

        // What the README marks required, plus what must agree with the trainer and the probes.
        string[] needed = [.. RequiredByReadme(), "CHECKPOINT_SOCKET_PATH", "CHECKPOINT_METRICS_PORT", "CHECKPOINT_JOB_NAME"];
        foreach (var name in needed)
        {
            Assert.False(string.IsNullOrEmpty(Manifests.Env(sidecar, name)), $"{example}: the sidecar lacks {name}");
        }

        // No misspelt setting: every CHECKPOINT_* variable is one the README documents.
        var documented = DocumentedByReadme();
        foreach (var env in sidecar.Env.Where(e => e.Name.StartsWith("CHECKPOINT_", StringComparison.Ordinal)))
        {
            Assert.True(documented.Contains(env.Name), $"{example}: {env.Name} is not a setting the README documents");
        }

        // POD_NAME / POD_NAMESPACE from the downward API.
        Assert.Equal("metadata.name", sidecar.Env.Single(e => e.Name == "POD_NAME").ValueFrom?.FieldRef?.FieldPath);
        Assert.Equal("metadata.namespace", sidecar.Env.Single(e => e.Name == "POD_NAMESPACE").ValueFrom?.FieldRef?.FieldPath);

        // The directories are the volumes' mount points.
        var socketMount = Manifests.MountHolding(sidecar, Manifests.Env(sidecar, "CHECKPOINT_SOCKET_PATH")!);
        Assert.Equal("checkpoint-socket", socketMount.Name);
        Assert.Equal(Manifests.Env(sidecar, "CHECKPOINT_STAGING_DIR"), Manifests.Mount(sidecar, "staging").MountPath);
        var storage = Manifests.Mount(sidecar, "checkpoints");
        Assert.Equal(Manifests.Env(sidecar, "CHECKPOINT_STORAGE_DIR"), storage.MountPath);
        Assert.NotEqual(true, storage.ReadOnlyProperty);

        // The fallback G agrees with the pod's real G.
        Assert.Equal(job.Spec.Template.Spec.TerminationGracePeriodSeconds?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Manifests.Env(sidecar, "CHECKPOINT_GRACE_PERIOD_SECONDS"));
        Assert.True(job.Spec.Template.Spec.TerminationGracePeriodSeconds >= 30, $"{example}: a grace period under 30 s leaves little to flush in");
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Sidecar_HasProbesOnTheMetricsPort(string example)
    {
        var sidecar = Manifests.Sidecar(await Manifests.JobAsync(example));
        var port = Assert.Single(sidecar.Ports, p => p.Name == "metrics");
        Assert.Equal(Manifests.Env(sidecar, "CHECKPOINT_METRICS_PORT"), port.ContainerPort.ToString(System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal("/readyz", sidecar.ReadinessProbe?.HttpGet?.Path);
        Assert.Equal("metrics", sidecar.ReadinessProbe!.HttpGet.Port.Value);
        Assert.Equal("/healthz", sidecar.LivenessProbe?.HttpGet?.Path);
        Assert.Equal("metrics", sidecar.LivenessProbe!.HttpGet.Port.Value);
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Sidecar_RunsNonRootReadOnlyWithoutPrivileges_WithResourceRequests(string example)
    {
        var job = await Manifests.JobAsync(example);
        var pod = job.Spec.Template.Spec;
        var sidecar = Manifests.Sidecar(job);
        var context = sidecar.SecurityContext;
        Assert.NotNull(context);
        Assert.True(context.RunAsNonRoot == true || pod.SecurityContext?.RunAsNonRoot == true, $"{example}: runAsNonRoot");
        Assert.Equal(true, context.ReadOnlyRootFilesystem);
        Assert.Equal(false, context.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], context.Capabilities?.Drop);
        Assert.Null(context.Capabilities?.Add);
        Assert.NotEqual(true, context.Privileged);
        Assert.Equal("RuntimeDefault", (context.SeccompProfile ?? pod.SecurityContext?.SeccompProfile)?.Type);
        Assert.Equal(true, pod.SecurityContext?.RunAsNonRoot);

        Assert.True(sidecar.Resources?.Requests?.ContainsKey("cpu") == true, $"{example}: cpu request");
        Assert.True(sidecar.Resources?.Requests?.ContainsKey("memory") == true, $"{example}: memory request");
        Assert.True(sidecar.Resources?.Limits?.ContainsKey("memory") == true, $"{example}: memory limit");
        var trainer = Manifests.Trainer(job);
        Assert.True(trainer.Resources?.Requests?.ContainsKey("memory") == true, $"{example}: trainer memory request");
        Assert.Equal(false, trainer.SecurityContext?.AllowPrivilegeEscalation);
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Trainer_SharesTheSocketStagingAndCheckpointVolumesAtTheSidecarsPaths(string example)
    {
        var job = await Manifests.JobAsync(example);
        var sidecar = Manifests.Sidecar(job);
        var trainer = Manifests.Trainer(job);

        Assert.Equal(Manifests.Env(sidecar, "CHECKPOINT_SOCKET_PATH"), Manifests.Env(trainer, "CHECKPOINT_SOCKET_PATH"));
        Assert.Equal(Manifests.Mount(sidecar, "checkpoint-socket").MountPath, Manifests.Mount(trainer, "checkpoint-socket").MountPath);
        // The sidecar names the dump and resume directories by its own paths.
        Assert.Equal(Manifests.Mount(sidecar, "staging").MountPath, Manifests.Mount(trainer, "staging").MountPath);
        Assert.Equal(Manifests.Mount(sidecar, "checkpoints").MountPath, Manifests.Mount(trainer, "checkpoints").MountPath);
        Assert.Equal(true, Manifests.Mount(trainer, "checkpoints").ReadOnlyProperty);

        var socket = Manifests.Volume(job, "checkpoint-socket");
        Assert.Equal("Memory", socket.EmptyDir?.Medium);
        Assert.NotNull(Manifests.Volume(job, "staging").EmptyDir);
        Assert.Equal("training-checkpoints", Manifests.Volume(job, "checkpoints").PersistentVolumeClaim?.ClaimName);
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Job_IgnoresDisruptionTargetFailures_AndHandlesExitCodes(string example)
    {
        var job = await Manifests.JobAsync(example);
        Assert.Equal("Never", job.Spec.Template.Spec.RestartPolicy);
        var rules = job.Spec.PodFailurePolicy?.Rules;
        Assert.NotNull(rules);

        // The first rule wins: DisruptionTarget (preemption, eviction) must be matched before any exit code.
        var first = rules[0];
        Assert.Equal("Ignore", first.Action);
        var condition = Assert.Single(first.OnPodConditions);
        Assert.Equal("DisruptionTarget", condition.Type);
        Assert.Null(first.OnExitCodes);

        var exitRules = rules.Where(r => r.OnExitCodes is not null).ToList();
        Assert.NotEmpty(exitRules);
        var containers = job.Spec.Template.Spec.Containers.Concat(job.Spec.Template.Spec.InitContainers ?? []).Select(c => c.Name).ToHashSet();
        foreach (var rule in exitRules)
        {
            Assert.Contains(rule.OnExitCodes.ContainerName, containers);
            Assert.DoesNotContain(0, rule.OnExitCodes.Values);
        }

        // A replacement pod never overlaps the pod whose flush is still running.
        Assert.Equal("Failed", job.Spec.PodReplacementPolicy);
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task PodTemplate_RunsAsTheServiceAccountAndCarriesThePodMonitorLabel(string example)
    {
        var job = await Manifests.JobAsync(example);
        var account = Assert.Single(await Manifests.ResourcesAsync<V1ServiceAccount>(example, "ServiceAccount"));
        Assert.Equal(account.Metadata.Name, job.Spec.Template.Spec.ServiceAccountName);

        var podMonitor = KustomizeTests.Kind(await Kustomize.BuildDocumentsAsync("deploy/observability"), "PodMonitor")!;
        foreach (var (key, value) in podMonitor["spec"]!["selector"]!["matchLabels"]!.AsObject())
        {
            Assert.Equal(value!.GetValue<string>(), job.Spec.Template.Metadata.Labels[key]);
        }
    }

    [Fact]
    public async Task NativeSidecar_IsAnInitContainerWithRestartPolicyAlwaysAndThePreStopSubcommand()
    {
        foreach (var example in new[] { "deploy/examples/job-native-sidecar", "deploy/examples/indexed-job" })
        {
            var job = await Manifests.JobAsync(example);
            Assert.True(Manifests.IsNativeSidecar(job), example);
            var sidecar = Manifests.Sidecar(job);
            Assert.Equal("Always", sidecar.RestartPolicy);
            Assert.Equal([EntrypointOfDockerfile(), "prestop"], sidecar.Lifecycle?.PreStop?.Exec?.Command);
            // The trainer starts once the socket is there.
            Assert.Equal("/readyz", sidecar.StartupProbe?.HttpGet?.Path);
        }

        var regular = await Manifests.JobAsync("deploy/examples/job-regular-sidecar");
        Assert.False(Manifests.IsNativeSidecar(regular));
    }

    [Fact]
    public async Task NativeSidecarExample_DocumentsTheTrainerPreStopRecipe()
    {
        var text = await File.ReadAllTextAsync(Path.Combine(RepoPaths.Root, "deploy/examples/job-native-sidecar/job.yaml"));
        Assert.Contains("command: [\"/checkpoint-tools/checkpoint-sidecar\", \"prestop\"]", text, StringComparison.Ordinal);
        Assert.Contains("command: [\"cp\", \"" + EntrypointOfDockerfile() + "\"", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IndexedJob_RunsSeveralPodsEachWithItsOwnCheckpointDirectory_WithTheCompletionIndexForRanks()
    {
        var job = await Manifests.JobAsync("deploy/examples/indexed-job");
        Assert.Equal("Indexed", job.Spec.CompletionMode);
        Assert.True(job.Spec.Parallelism > 1);
        Assert.Equal(job.Spec.Completions, job.Spec.Parallelism);

        var sidecar = Manifests.Sidecar(job);
        // Each pod commits only its own ranks, so each needs its own LATEST: no cross-pod commit yet.
        Assert.Equal(job.Metadata.Name + "-$(JOB_COMPLETION_INDEX)", Manifests.Env(sidecar, "CHECKPOINT_JOB_NAME"));
        Assert.Equal("metadata.annotations['batch.kubernetes.io/job-completion-index']",
            sidecar.Env.Single(e => e.Name == "JOB_COMPLETION_INDEX").ValueFrom?.FieldRef?.FieldPath);
        // Kubernetes expands $(VAR) only from variables declared earlier in the list.
        Assert.True(sidecar.Env.ToList().FindIndex(e => e.Name == "JOB_COMPLETION_INDEX")
            < sidecar.Env.ToList().FindIndex(e => e.Name == "CHECKPOINT_JOB_NAME"));

        var trainer = Manifests.Trainer(job);
        Assert.Contains(trainer.Env, e => e.Name == "JOB_COMPLETION_INDEX");
        Assert.Contains("--node-rank=\"$JOB_COMPLETION_INDEX\"", string.Join(' ', trainer.Args), StringComparison.Ordinal);

        var service = Assert.Single(await Manifests.ResourcesAsync<V1Service>("deploy/examples/indexed-job", "Service"));
        Assert.Equal("None", service.Spec.ClusterIP);
        Assert.Equal(service.Metadata.Name, job.Spec.Template.Spec.Subdomain);
    }

    [Fact]
    public async Task Rbac_GrantsOnlyGetAndWatchOnPodsAndCreateOnEvents()
    {
        var role = Assert.Single(await Manifests.ResourcesAsync<V1Role>("deploy/base", "Role"));
        var grants = role.Rules
            .SelectMany(r => r.ApiGroups.SelectMany(g => r.Resources.SelectMany(res => r.Verbs.Select(v => $"{g}/{res}:{v}"))))
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.Equal(["/events:create", "/pods:get", "/pods:watch"], grants);
        Assert.All(role.Rules, r => Assert.Null(r.NonResourceURLs));

        var binding = Assert.Single(await Manifests.ResourcesAsync<V1RoleBinding>("deploy/base", "RoleBinding"));
        var account = Assert.Single(await Manifests.ResourcesAsync<V1ServiceAccount>("deploy/base", "ServiceAccount"));
        Assert.Equal(("Role", role.Metadata.Name), (binding.RoleRef.Kind, binding.RoleRef.Name));
        var subject = Assert.Single(binding.Subjects);
        Assert.Equal(("ServiceAccount", account.Metadata.Name), (subject.Kind, subject.Name));
        Assert.Empty(await Manifests.ResourcesAsync<V1ClusterRole>("deploy/base", "ClusterRole"));
    }

    [Fact]
    public async Task NfsStorage_IsAReadWriteManyVolumeTheClaimBindsTo()
    {
        var pv = Assert.Single(await Manifests.ResourcesAsync<V1PersistentVolume>("deploy/storage/nfs", "PersistentVolume"));
        var pvc = Assert.Single(await Manifests.ResourcesAsync<V1PersistentVolumeClaim>("deploy/storage/nfs", "PersistentVolumeClaim"));
        Assert.NotNull(pv.Spec.Nfs);
        Assert.False(string.IsNullOrEmpty(pv.Spec.Nfs.Server));
        Assert.StartsWith("/", pv.Spec.Nfs.Path, StringComparison.Ordinal);
        Assert.Equal(["ReadWriteMany"], pv.Spec.AccessModes);
        Assert.Equal(["ReadWriteMany"], pvc.Spec.AccessModes);
        Assert.Equal("Retain", pv.Spec.PersistentVolumeReclaimPolicy);
        Assert.Equal(pv.Spec.StorageClassName, pvc.Spec.StorageClassName);
        foreach (var (key, value) in pvc.Spec.Selector.MatchLabels)
        {
            Assert.Equal(value, pv.Metadata.Labels[key]);
        }

        Assert.Contains("hard", pv.Spec.MountOptions);
        foreach (var example in Kustomize.Examples)
        {
            var claim = Manifests.Volume(await Manifests.JobAsync(example), "checkpoints").PersistentVolumeClaim.ClaimName;
            Assert.Equal(pvc.Metadata.Name, claim);
        }
    }

    private static string EntrypointOfDockerfile()
    {
        var dockerfile = File.ReadAllText(Path.Combine(RepoPaths.Root, "Dockerfile.sidecar"));
        var match = Regex.Match(dockerfile, @"^ENTRYPOINT \[""([^""]+)""\]", RegexOptions.Multiline);
        Assert.True(match.Success, "Dockerfile.sidecar has no exec-form ENTRYPOINT");
        return match.Groups[1].Value;
    }
}
