using System.Globalization;
using System.Text.RegularExpressions;
using Checkpoint.Deploy.Tests.Infrastructure;
using k8s.Models;

namespace Checkpoint.Deploy.Tests;

/// <summary>
/// Each example's pod templates (a Job's, a JobSet's child Jobs', a PyTorchJob's replicas'), as
/// kubectl renders them, give the sidecar what the README says it needs and the trainer what it
/// shares with the sidecar; preemptions do not count as failures.
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
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            var sidecar = Manifests.Sidecar(pod.Spec);

            // What the README marks required, plus what must agree with the trainer and the probes.
            string[] needed = [.. RequiredByReadme(), "CHECKPOINT_SOCKET_PATH", "CHECKPOINT_METRICS_PORT"];
            foreach (var name in needed)
            {
                Assert.False(string.IsNullOrEmpty(Manifests.Env(sidecar, name)), $"{pod}: the sidecar lacks {name}");
            }

            // The job's directory: a literal name or one from the downward API (the multi-pod examples).
            var jobName = Manifests.EnvVar(sidecar, "CHECKPOINT_JOB_NAME");
            Assert.True(jobName is not null && (!string.IsNullOrEmpty(jobName.Value) || jobName.ValueFrom?.FieldRef is not null),
                $"{pod}: the sidecar lacks CHECKPOINT_JOB_NAME");

            // No misspelt setting: every CHECKPOINT_* variable is one the README documents.
            var documented = DocumentedByReadme();
            foreach (var env in sidecar.Env.Where(e => e.Name.StartsWith("CHECKPOINT_", StringComparison.Ordinal)))
            {
                Assert.True(documented.Contains(env.Name), $"{pod}: {env.Name} is not a setting the README documents");
            }

            // POD_NAME / POD_NAMESPACE from the downward API: every pod's own name, so the pods of one job
            // tell their shards apart.
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
            Assert.Equal(pod.Spec.TerminationGracePeriodSeconds?.ToString(CultureInfo.InvariantCulture),
                Manifests.Env(sidecar, "CHECKPOINT_GRACE_PERIOD_SECONDS"));
            Assert.True(pod.Spec.TerminationGracePeriodSeconds >= 30, $"{pod}: a grace period under 30 s leaves little to flush in");
        }
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Sidecar_HasProbesOnTheMetricsPort(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            var sidecar = Manifests.Sidecar(pod.Spec);
            var port = Assert.Single(sidecar.Ports, p => p.Name == "metrics");
            Assert.Equal(Manifests.Env(sidecar, "CHECKPOINT_METRICS_PORT"), port.ContainerPort.ToString(CultureInfo.InvariantCulture));

            Assert.Equal("/readyz", sidecar.ReadinessProbe?.HttpGet?.Path);
            Assert.Equal("metrics", sidecar.ReadinessProbe!.HttpGet.Port.Value);
            Assert.Equal("/healthz", sidecar.LivenessProbe?.HttpGet?.Path);
            Assert.Equal("metrics", sidecar.LivenessProbe!.HttpGet.Port.Value);
        }
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Sidecar_RunsNonRootReadOnlyWithoutPrivileges_WithResourceRequests(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            var sidecar = Manifests.Sidecar(pod.Spec);
            var context = sidecar.SecurityContext;
            Assert.NotNull(context);
            Assert.True(context.RunAsNonRoot == true || pod.Spec.SecurityContext?.RunAsNonRoot == true, $"{pod}: runAsNonRoot");
            Assert.Equal(true, context.ReadOnlyRootFilesystem);
            Assert.Equal(false, context.AllowPrivilegeEscalation);
            Assert.Equal(["ALL"], context.Capabilities?.Drop);
            Assert.Null(context.Capabilities?.Add);
            Assert.NotEqual(true, context.Privileged);
            Assert.Equal("RuntimeDefault", (context.SeccompProfile ?? pod.Spec.SecurityContext?.SeccompProfile)?.Type);
            Assert.Equal(true, pod.Spec.SecurityContext?.RunAsNonRoot);

            Assert.True(sidecar.Resources?.Requests?.ContainsKey("cpu") == true, $"{pod}: cpu request");
            Assert.True(sidecar.Resources?.Requests?.ContainsKey("memory") == true, $"{pod}: memory request");
            Assert.True(sidecar.Resources?.Limits?.ContainsKey("memory") == true, $"{pod}: memory limit");
            var trainer = Manifests.Trainer(pod.Spec);
            Assert.True(trainer.Resources?.Requests?.ContainsKey("memory") == true, $"{pod}: trainer memory request");
            Assert.Equal(false, trainer.SecurityContext?.AllowPrivilegeEscalation);
        }
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Trainer_SharesTheSocketStagingAndCheckpointVolumesAtTheSidecarsPaths(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            var sidecar = Manifests.Sidecar(pod.Spec);
            var trainer = Manifests.Trainer(pod.Spec);

            Assert.Equal(Manifests.Env(sidecar, "CHECKPOINT_SOCKET_PATH"), Manifests.Env(trainer, "CHECKPOINT_SOCKET_PATH"));
            Assert.Equal(Manifests.Mount(sidecar, "checkpoint-socket").MountPath, Manifests.Mount(trainer, "checkpoint-socket").MountPath);
            // The sidecar names the dump and resume directories by its own paths.
            Assert.Equal(Manifests.Mount(sidecar, "staging").MountPath, Manifests.Mount(trainer, "staging").MountPath);
            Assert.Equal(Manifests.Mount(sidecar, "checkpoints").MountPath, Manifests.Mount(trainer, "checkpoints").MountPath);
            Assert.Equal(true, Manifests.Mount(trainer, "checkpoints").ReadOnlyProperty);

            var socket = Manifests.Volume(pod.Spec, "checkpoint-socket");
            Assert.Equal("Memory", socket.EmptyDir?.Medium);
            Assert.NotNull(Manifests.Volume(pod.Spec, "staging").EmptyDir);
            Assert.Equal("training-checkpoints", Manifests.Volume(pod.Spec, "checkpoints").PersistentVolumeClaim?.ClaimName);
        }
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Job_IgnoresDisruptionTargetFailures_AndHandlesExitCodes(string example)
    {
        var pods = await Manifests.PodsAsync(example);
        foreach (var pod in pods)
        {
            if (pod.Kind == Workloads.PyTorchJob)
            {
                // No podFailurePolicy in a PyTorchJob: see PyTorchJob_IsAMasterAndWorkers... below.
                Assert.Null(pod.Job);
                continue;
            }

            var job = Assert.IsType<V1JobSpec>(pod.Job);
            Assert.Equal("Never", pod.Spec.RestartPolicy);
            var rules = job.PodFailurePolicy?.Rules;
            Assert.NotNull(rules);

            // The first rule wins: DisruptionTarget (preemption, eviction) must be matched before any exit code.
            var first = rules[0];
            Assert.Equal("Ignore", first.Action);
            var condition = Assert.Single(first.OnPodConditions);
            Assert.Equal("DisruptionTarget", condition.Type);
            // The built-in Job API defaults status to True; a CRD's copy of the schema (JobSet) does not.
            Assert.True(condition.Status is null or "True", $"{pod}: onPodConditions status {condition.Status}");
            if (pod.Kind != Workloads.BatchJob)
            {
                Assert.Equal("True", condition.Status);
            }

            Assert.Null(first.OnExitCodes);

            var exitRules = rules.Where(r => r.OnExitCodes is not null).ToList();
            Assert.NotEmpty(exitRules);
            var containers = pod.Spec.Containers.Concat(pod.Spec.InitContainers ?? []).Select(c => c.Name).ToHashSet();
            foreach (var rule in exitRules)
            {
                Assert.Contains(rule.OnExitCodes.ContainerName, containers);
                Assert.DoesNotContain(0, rule.OnExitCodes.Values);
                // torchrun reports every worker failure as 1: a FailJob on 1 would end the job at the first
                // preemption (the pods that were not preempted exit with it).
                if (rule.Action == "FailJob" && Manifests.Trainer(pod.Spec).Args?.Any(a => a.Contains("torchrun", StringComparison.Ordinal)) == true)
                {
                    Assert.DoesNotContain(1, rule.OnExitCodes.Values);
                }
            }

            // A replacement pod never overlaps the pod whose flush is still running.
            Assert.Equal("Failed", job.PodReplacementPolicy);
        }
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task PodTemplate_RunsAsTheServiceAccountAndCarriesThePodMonitorLabel(string example)
    {
        var account = Assert.Single(await Manifests.ResourcesAsync<V1ServiceAccount>(example, "ServiceAccount"));
        var podMonitor = KustomizeTests.Kind(await Kustomize.BuildDocumentsAsync("deploy/observability"), "PodMonitor")!;
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            Assert.Equal(account.Metadata.Name, pod.Spec.ServiceAccountName);
            // No automatic token in any container; the sidecar mounts its own (ServiceAccountToken_... below).
            Assert.Equal(false, pod.Spec.AutomountServiceAccountToken);
            Assert.Equal(false, account.AutomountServiceAccountToken);

            foreach (var (key, value) in podMonitor["spec"]!["selector"]!["matchLabels"]!.AsObject())
            {
                Assert.Equal(value!.GetValue<string>(), pod.Template.Metadata.Labels[key]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Example_RendersTheSidecarImageFromKustomizeImages_InEveryContainerThatRunsIt(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            Assert.Equal("registry.example.com/platform/checkpoint-sidecar:" + VersionTests.ProjectVersion(), Manifests.Sidecar(pod.Spec).Image);
            var all = pod.Spec.Containers.Concat(pod.Spec.InitContainers ?? []).ToList();
            Assert.DoesNotContain(all, c => c.Image == "checkpoint-sidecar");
        }
    }

    /// <summary>
    /// The image is chiseled: no shell, no <c>cp</c>. A container of the sidecar image that runs anything
    /// but the binary itself (for example <c>cp</c> to share the binary with the trainer) never starts.
    /// </summary>
    [Theory]
    [MemberData(nameof(Examples))]
    public async Task ContainersOfTheSidecarImage_RunTheBinaryItself_TheImageHasNoShellOrCp(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            var image = Manifests.Sidecar(pod.Spec).Image;
            foreach (var container in pod.Spec.Containers.Concat(pod.Spec.InitContainers ?? []).Where(c => c.Image == image))
            {
                if (container.Command is { Count: > 0 } command)
                {
                    Assert.True(command[0] == "/usr/local/bin/checkpoint-sidecar", $"{example}: container {container.Name} runs {command[0]}, which the chiseled image does not have");
                }

                var execs = new[] { container.Lifecycle?.PreStop?.Exec, container.Lifecycle?.PostStart?.Exec };
                foreach (var exec in execs.Where(e => e is not null))
                {
                    Assert.Equal("/usr/local/bin/checkpoint-sidecar", exec!.Command[0]);
                }
            }
        }
    }

    [Fact]
    public async Task NativeSidecar_IsAnInitContainerWithRestartPolicyAlwaysAndThePreStopSubcommand()
    {
        foreach (var example in Kustomize.Examples.Where(e => e != "deploy/examples/job-regular-sidecar"))
        {
            foreach (var pod in await Manifests.PodsAsync(example))
            {
                Assert.True(Manifests.IsNativeSidecar(pod.Spec), pod.ToString());
                var sidecar = Manifests.Sidecar(pod.Spec);
                Assert.Equal("Always", sidecar.RestartPolicy);
                Assert.Equal([EntrypointOfDockerfile(), "prestop"], sidecar.Lifecycle?.PreStop?.Exec?.Command);
                // The trainer starts once the socket is there.
                Assert.Equal("/readyz", sidecar.StartupProbe?.HttpGet?.Path);
            }
        }

        var regular = await Manifests.JobAsync("deploy/examples/job-regular-sidecar");
        Assert.False(Manifests.IsNativeSidecar(regular));
    }

    [Fact]
    public async Task NativeSidecarExample_DocumentsTheTrainerPreStopRecipe()
    {
        var text = await File.ReadAllTextAsync(Path.Combine(RepoPaths.Root, "deploy/examples/job-native-sidecar/job.yaml"));
        Assert.Contains("command: [\"/checkpoint-tools/checkpoint-sidecar\", \"prestop\"]", text, StringComparison.Ordinal);
        Assert.Contains("command: [\"" + EntrypointOfDockerfile() + "\", \"copy-binary\", \"/checkpoint-tools\"]", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SinglePodExamples_NameTheirJobDirectoryAfterTheJob()
    {
        foreach (var example in Kustomize.Examples.Except(Kustomize.MultiPodExamples))
        {
            var job = await Manifests.JobAsync(example);
            Assert.Equal(1, job.Spec.Parallelism ?? 1);
            Assert.Equal(job.Metadata.Name, Manifests.Env(Manifests.Sidecar(job), "CHECKPOINT_JOB_NAME"));
        }
    }

    [Fact]
    public async Task IndexedJob_RunsSeveralPodsSharingOneJobDirectory_WithTheCompletionIndexForRanks()
    {
        var job = await Manifests.JobAsync("deploy/examples/indexed-job");
        Assert.Equal("Indexed", job.Spec.CompletionMode);
        Assert.True(job.Spec.Parallelism > 1);
        Assert.Equal(job.Spec.Completions, job.Spec.Parallelism);

        // One directory for every pod: the Job's name, from the label the Job controller sets.
        var sidecar = Manifests.Sidecar(job);
        Assert.Equal("metadata.labels['batch.kubernetes.io/job-name']", Manifests.EnvVar(sidecar, "CHECKPOINT_JOB_NAME")?.ValueFrom?.FieldRef?.FieldPath);

        var trainer = Manifests.Trainer(job);
        Assert.Equal("metadata.annotations['batch.kubernetes.io/job-completion-index']",
            trainer.Env.Single(e => e.Name == "JOB_COMPLETION_INDEX").ValueFrom?.FieldRef?.FieldPath);
        var command = string.Join(' ', trainer.Args);
        Assert.Contains("--node_rank=\"$JOB_COMPLETION_INDEX\"", command, StringComparison.Ordinal);

        // The rendezvous address is pod 0's stable DNS name through the headless Service.
        var service = Assert.Single(await Manifests.ResourcesAsync<V1Service>("deploy/examples/indexed-job", "Service"));
        Assert.Equal("None", service.Spec.ClusterIP);
        Assert.Equal(service.Metadata.Name, job.Spec.Template.Spec.Subdomain);
        Assert.Equal(job.Metadata.Name, service.Spec.Selector["batch.kubernetes.io/job-name"]);
        Assert.Contains($"--master_addr={job.Metadata.Name}-0.{service.Metadata.Name} ", command, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(MultiPodExamples))]
    public async Task MultiPodExample_SharesOneJobDirectory_NamedByALabelItsKindSetsOnEveryPod(string example)
    {
        var pods = await Manifests.PodsAsync(example);
        Assert.True(pods.Sum(p => p.Pods) > 1, $"{example}: one pod");
        foreach (var pod in pods)
        {
            var label = Workloads.JobNameLabel[pod.Kind];
            var jobName = Manifests.EnvVar(Manifests.Sidecar(pod.Spec), "CHECKPOINT_JOB_NAME");
            Assert.NotNull(jobName);
            // From the downward API, not a literal: the same value on every pod, set by the controller.
            Assert.Null(jobName.Value);
            Assert.Equal($"metadata.labels['{label}']", jobName.ValueFrom?.FieldRef?.FieldPath);
            // The controller's label, not one the template sets (which could differ between templates).
            Assert.False(pod.Template.Metadata?.Labels?.ContainsKey(label) == true, $"{pod}: the template sets {label} itself");
            if (pod.Kind == Workloads.JobSet)
            {
                // Not the child Job's name: that differs between the JobSet's child Jobs.
                Assert.DoesNotContain("batch.kubernetes.io/job-name", jobName.ValueFrom!.FieldRef.FieldPath, StringComparison.Ordinal);
            }
        }

        // Every template of the example derives it the same way.
        Assert.Single(pods.Select(p => Manifests.EnvVar(Manifests.Sidecar(p.Spec), "CHECKPOINT_JOB_NAME")!.ValueFrom!.FieldRef.FieldPath).Distinct());
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task PodMonitor_LabelsEveryPodOfAnExampleWithTheJobItCheckpointsFor(string example)
    {
        var podMonitor = KustomizeTests.Kind(await Kustomize.BuildDocumentsAsync("deploy/observability"), "PodMonitor")!;
        var relabelings = podMonitor["spec"]!["podMetricsEndpoints"]![0]!["relabelings"]!.AsArray()
            .Where(r => r!["action"]!.GetValue<string>() == "replace" && r["targetLabel"]!.GetValue<string>() == "job_name")
            .ToList();
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            // The labels the pod's controllers put on it (besides the template's own).
            var labels = new Dictionary<string, string>(pod.Template.Metadata?.Labels ?? new Dictionary<string, string>());
            switch (pod.Kind)
            {
                case Workloads.BatchJob:
                    labels["job-name"] = labels["batch.kubernetes.io/job-name"] = pod.Name;
                    break;
                case Workloads.JobSet:
                    var childJob = $"{pod.Name}-{Regex.Match(pod.Where, @"\((.+)\)").Groups[1].Value}-0";
                    labels["job-name"] = labels["batch.kubernetes.io/job-name"] = childJob;
                    labels["jobset.sigs.k8s.io/jobset-name"] = pod.Name;
                    break;
                case Workloads.PyTorchJob:
                    labels["training.kubeflow.org/job-name"] = pod.Name;
                    break;
            }

            // Prometheus's pod discovery: __meta_kubernetes_pod_label_<name, non-alphanumerics as _>.
            var meta = labels.ToDictionary(kv => "__meta_kubernetes_pod_label_" + Regex.Replace(kv.Key, "[^a-zA-Z0-9_]", "_"), kv => kv.Value);
            string? jobName = null;
            foreach (var rule in relabelings)
            {
                var source = Assert.Single(rule!["sourceLabels"]!.AsArray())!.GetValue<string>();
                Assert.Equal("(.+)", rule["regex"]!.GetValue<string>());
                if (meta.TryGetValue(source, out var value) && value.Length > 0)
                {
                    jobName = value;
                }
            }

            // The same name the sidecar names the job's directory by.
            var fromEnv = Manifests.EnvVar(Manifests.Sidecar(pod.Spec), "CHECKPOINT_JOB_NAME")!;
            var directory = fromEnv.Value ?? labels[Regex.Match(fromEnv.ValueFrom.FieldRef.FieldPath, @"^metadata\.labels\['(.+)'\]$").Groups[1].Value];
            Assert.Equal(pod.Name, jobName);
            Assert.Equal(directory, jobName);
        }
    }

    [Fact]
    public async Task DeployReadme_TablesTheJobNameLabelOfEveryMultiPodExample()
    {
        var readme = await File.ReadAllTextAsync(Path.Combine(RepoPaths.Root, "deploy", "README.md"));
        var rows = Regex.Matches(readme, @"^\|.*\|$", RegexOptions.Multiline).Select(m => m.Value).ToList();
        foreach (var example in Kustomize.MultiPodExamples)
        {
            var pod = (await Manifests.PodsAsync(example))[0];
            var label = Workloads.JobNameLabel[pod.Kind];
            var row = Assert.Single(rows, r => r.TrimEnd('|').Split('|')[^1].Contains($"`{Path.GetFileName(example)}`", StringComparison.Ordinal));
            Assert.Contains($"`{label}`", row.Split('|')[2], StringComparison.Ordinal);
        }

        // The torchrun pitfall and its recipe are documented where the examples point.
        Assert.Contains("## torchrun and the grace period", readme, StringComparison.Ordinal);
        Assert.Contains("## Jobs that span many pods", readme, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(MultiPodExamples))]
    public async Task MultiPodExample_GivesTorchrunAWorldOfEveryPod(string example)
    {
        var pods = await Manifests.PodsAsync(example);
        var totalPods = pods.Sum(p => p.Pods);
        foreach (var pod in pods)
        {
            var trainer = Manifests.Trainer(pod.Spec);
            var command = string.Join(' ', (trainer.Command ?? []).Concat(trainer.Args ?? []));
            // exec: torchrun is the container's main process and gets the SIGTERM that follows the preStop hook.
            Assert.Contains("exec torchrun ", command, StringComparison.Ordinal);
            var nnodes = int.Parse(Regex.Match(command, @"--nnodes=(\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
            var perNode = int.Parse(Regex.Match(command, @"--nproc_per_node=(\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.Equal(totalPods, nnodes);
            Assert.Matches(@"--node_rank=""\$", command);
            Assert.Matches(@"--master_addr=\S+", command);
            // One process per GPU.
            Assert.Equal(perNode.ToString(CultureInfo.InvariantCulture), trainer.Resources.Limits["nvidia.com/gpu"].ToString());
        }
    }

    [Theory]
    [MemberData(nameof(MultiPodExamples))]
    public async Task MultiPodExample_HoldsTheTrainersSigtermUntilTheCheckpointIsCommitted(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            // torchrun SIGKILLs its workers 30 s after forwarding SIGTERM: the trainer's preStop hook runs
            // `prestop`, and the kubelet sends SIGTERM only when it returns.
            var trainer = Manifests.Trainer(pod.Spec);
            var hook = trainer.Lifecycle?.PreStop?.Exec?.Command;
            Assert.NotNull(hook);
            Assert.Equal(2, hook.Count);
            Assert.Equal("prestop", hook[1]);
            var toolDirectory = Path.GetDirectoryName(hook[0])!;

            // The binary comes from the sidecar image, copied by an init container that runs to completion
            // (the binary's own copy-binary: the image has no cp) to the name the hook runs.
            var sidecar = Manifests.Sidecar(pod.Spec);
            var copy = Assert.Single(pod.Spec.InitContainers ?? [], c => c.Command is [_, "copy-binary", ..]);
            Assert.Null(copy.RestartPolicy);
            Assert.Equal(sidecar.Image, copy.Image);
            Assert.Equal([EntrypointOfDockerfile(), "copy-binary", toolDirectory], copy.Command);
            Assert.Equal("checkpoint-sidecar", Path.GetFileName(hook[0]));
            Assert.Equal(Manifests.Mount(copy, "checkpoint-tools").MountPath, toolDirectory);
            Assert.Equal(toolDirectory, Manifests.Mount(trainer, "checkpoint-tools").MountPath);
            Assert.Equal(true, Manifests.Mount(trainer, "checkpoint-tools").ReadOnlyProperty);
            Assert.NotNull(Manifests.Volume(pod.Spec, "checkpoint-tools").EmptyDir);
            Assert.Equal(false, copy.SecurityContext?.AllowPrivilegeEscalation);
            Assert.Equal(true, copy.SecurityContext?.ReadOnlyRootFilesystem);
            Assert.Equal(["ALL"], copy.SecurityContext?.Capabilities?.Drop);
            Assert.True(copy.Resources?.Limits?.ContainsKey("memory") == true, $"{pod}: copy container memory limit");

            // `prestop` finds the sidecar through CHECKPOINT_SOCKET_PATH in the trainer's environment.
            Assert.Equal(Manifests.Env(sidecar, "CHECKPOINT_SOCKET_PATH"), Manifests.Env(trainer, "CHECKPOINT_SOCKET_PATH"));
        }
    }

    [Fact]
    public async Task JobSet_RanksItsChildJobsPodsAsOneWorld_AndRestartsOnlyWhenAChildJobCannot()
    {
        var (kind, root) = Assert.Single(await Workloads.WorkloadsAsync("deploy/examples/jobset"));
        Assert.Equal(Workloads.JobSet, kind);
        var name = Yaml.Scalar(root, "metadata", "name");
        Assert.Equal("true", Yaml.Scalar(root, "spec", "network", "enableDNSHostnames"));
        var subdomain = Yaml.Scalar(root, "spec", "network", "subdomain") ?? name;

        // Every old pod (and its flush) is gone before a restart's pods start.
        Assert.Equal("BlockingRecreate", Yaml.Scalar(root, "spec", "failurePolicy", "restartStrategy"));
        // A child Job failed by its FailJob rule (a non-retriable exit) fails the JobSet instead of restarting it.
        var rules = Yaml.Load(Yaml.Text(Yaml.Child(root, "spec", "failurePolicy", "rules")!)).AsArray();
        var rule = Assert.Single(rules);
        Assert.Equal("FailJobSet", rule!["action"]!.GetValue<string>());
        Assert.Equal(["PodFailurePolicy"], rule["onJobFailureReasons"]!.AsArray().Select(r => r!.GetValue<string>()));

        var pod = Assert.Single(await Manifests.PodsAsync("deploy/examples/jobset"));
        Assert.Equal("Indexed", pod.Job!.CompletionMode);
        var replicatedJob = Regex.Match(pod.Where, @"\((.+)\)").Groups[1].Value;
        var trainer = Manifests.Trainer(pod.Spec);
        var command = string.Join(' ', trainer.Args);
        // Node rank = job index * pods per child Job + completion index; node 0 is the master.
        Assert.Contains($"--node_rank=\"$((JOB_INDEX * {pod.Job.Parallelism} + JOB_COMPLETION_INDEX))\"", command, StringComparison.Ordinal);
        Assert.Contains($"--master_addr={name}-{replicatedJob}-0-0.{subdomain} ", command, StringComparison.Ordinal);
        Assert.Equal("metadata.annotations['jobset.sigs.k8s.io/job-index']", Manifests.EnvVar(trainer, "JOB_INDEX")?.ValueFrom?.FieldRef?.FieldPath);
        Assert.Equal("metadata.annotations['batch.kubernetes.io/job-completion-index']",
            Manifests.EnvVar(trainer, "JOB_COMPLETION_INDEX")?.ValueFrom?.FieldRef?.FieldPath);
    }

    [Fact]
    public async Task PyTorchJob_IsAMasterAndWorkers_RestartedOnFailure_WithThePytorchContainerTheOperatorLooksFor()
    {
        var (kind, root) = Assert.Single(await Workloads.WorkloadsAsync("deploy/examples/pytorchjob"));
        Assert.Equal(Workloads.PyTorchJob, kind);
        var replicaSpecs = (YamlDotNet.RepresentationModel.YamlMappingNode)Yaml.Child(root, "spec", "pytorchReplicaSpecs")!;
        Assert.Equal(["Master", "Worker"], replicaSpecs.Children.Keys.Select(k => k.ToString()).Order(StringComparer.Ordinal));
        Assert.Equal("1", Yaml.Scalar(replicaSpecs, "Master", "replicas"));
        foreach (var replicaType in new[] { "Master", "Worker" })
        {
            // ExitCode would take torchrun's 1 (every worker failure, preemptions included) as permanent.
            Assert.Equal("OnFailure", Yaml.Scalar(replicaSpecs, replicaType, "restartPolicy"));
        }

        Assert.NotNull(Yaml.Scalar(root, "spec", "runPolicy", "backoffLimit"));
        foreach (var pod in await Manifests.PodsAsync("deploy/examples/pytorchjob"))
        {
            // The operator sets MASTER_ADDR, MASTER_PORT, RANK ... in the container named "pytorch", and reads
            // the master's port from its port named pytorchjob-port.
            var trainer = Manifests.Trainer(pod.Spec);
            Assert.Equal("pytorch", trainer.Name);
            Assert.Contains(trainer.Ports, p => p.Name == "pytorchjob-port");
            var command = string.Join(' ', trainer.Args);
            Assert.Contains("--node_rank=\"$RANK\"", command, StringComparison.Ordinal);
            Assert.Contains("--master_addr=\"$MASTER_ADDR\" --master_port=\"$MASTER_PORT\"", command, StringComparison.Ordinal);
            // The replica spec's restartPolicy is the one that counts; the template leaves it alone.
            Assert.Null(pod.Spec.RestartPolicy);
        }
    }

    [Fact]
    public async Task Rbac_GrantsOnlyGetWatchAndPatchOnPodsAndCreateOnEvents()
    {
        var role = Assert.Single(await Manifests.ResourcesAsync<V1Role>("deploy/base", "Role"));
        var grants = role.Rules
            .SelectMany(r => r.ApiGroups.SelectMany(g => r.Resources.SelectMany(res => r.Verbs.Select(v => $"{g}/{res}:{v}"))))
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.Equal(["/events:create", "/pods:get", "/pods:patch", "/pods:watch"], grants);
        Assert.All(role.Rules, r => Assert.Null(r.NonResourceURLs));

        var binding = Assert.Single(await Manifests.ResourcesAsync<V1RoleBinding>("deploy/base", "RoleBinding"));
        var account = Assert.Single(await Manifests.ResourcesAsync<V1ServiceAccount>("deploy/base", "ServiceAccount"));
        Assert.Equal(("Role", role.Metadata.Name), (binding.RoleRef.Kind, binding.RoleRef.Name));
        var subject = Assert.Single(binding.Subjects);
        Assert.Equal(("ServiceAccount", account.Metadata.Name), (subject.Kind, subject.Name));
        Assert.Empty(await Manifests.ResourcesAsync<V1ClusterRole>("deploy/base", "ClusterRole"));
    }

    [Fact]
    public async Task NfsStorage_IsAReadWriteManyClaimOfAStorageClass_AndTheStaticVolumeIsOptional()
    {
        // The default: only the namespaced claim, which a provisioner fills.
        Assert.Empty(await Manifests.ResourcesAsync<V1PersistentVolume>("deploy/storage/nfs", "PersistentVolume"));
        var pvc = Assert.Single(await Manifests.ResourcesAsync<V1PersistentVolumeClaim>("deploy/storage/nfs", "PersistentVolumeClaim"));
        Assert.Equal(["ReadWriteMany"], pvc.Spec.AccessModes);
        Assert.False(string.IsNullOrEmpty(pvc.Spec.StorageClassName), "the claim names no storage class");
        Assert.Null(pvc.Spec.Selector);
        foreach (var example in Kustomize.Examples)
        {
            // A cluster-scoped volume in an example would bind the first namespace that applies it.
            Assert.Empty(await Manifests.ResourcesAsync<V1PersistentVolume>(example, "PersistentVolume"));
            foreach (var pod in await Manifests.PodsAsync(example))
            {
                Assert.Equal(pvc.Metadata.Name, Manifests.Volume(pod.Spec, "checkpoints").PersistentVolumeClaim.ClaimName);
            }
        }

        // The optional static volume: kept out of every kustomization, bound to that claim by claimRef.
        var staticPv = Path.Combine(RepoPaths.Root, "deploy", "storage", "nfs", "static-pv.yaml");
        foreach (var kustomization in Directory.EnumerateFiles(DeployPaths.Deploy, "kustomization.yaml", SearchOption.AllDirectories))
        {
            Assert.DoesNotMatch(@"(?m)^\s*-\s*(\S*/)?static-pv\.yaml\s*$", await File.ReadAllTextAsync(kustomization));
        }

        var pv = k8s.KubernetesYaml.Deserialize<V1PersistentVolume>(await File.ReadAllTextAsync(staticPv), strict: true);
        Assert.NotNull(pv.Spec.Nfs);
        Assert.False(string.IsNullOrEmpty(pv.Spec.Nfs.Server));
        Assert.StartsWith("/", pv.Spec.Nfs.Path, StringComparison.Ordinal);
        Assert.Equal(["ReadWriteMany"], pv.Spec.AccessModes);
        Assert.Equal("Retain", pv.Spec.PersistentVolumeReclaimPolicy);
        Assert.Equal("", pv.Spec.StorageClassName);
        Assert.Equal(pvc.Metadata.Name, pv.Spec.ClaimRef?.Name);
        Assert.False(string.IsNullOrEmpty(pv.Spec.ClaimRef?.NamespaceProperty), "the static volume binds no namespace's claim in particular");
        Assert.Contains("hard", pv.Spec.MountOptions);
    }

    [Fact]
    public async Task NfsDocs_SayFsGroupDoesNotMakeTheExportWritable_AndWhatDoes()
    {
        var readme = await File.ReadAllTextAsync(Path.Combine(RepoPaths.Root, "deploy", "README.md"));
        var section = Regex.Match(readme, @"^## storage/nfs$(.*?)(?=^## )", RegexOptions.Multiline | RegexOptions.Singleline).Groups[1].Value;
        Assert.Contains("fsGroup", section, StringComparison.Ordinal);
        Assert.Contains("all_squash", section, StringComparison.Ordinal);
        Assert.Contains("anonuid=1654", section, StringComparison.Ordinal);
        Assert.Contains("chown 1654:1654", section, StringComparison.Ordinal);
        // The examples run as the uid the docs tell the export to accept.
        foreach (var example in Kustomize.Examples)
        {
            foreach (var pod in await Manifests.PodsAsync(example))
            {
                Assert.Equal(1654, pod.Spec.SecurityContext?.RunAsUser);
                Assert.Equal(1654, pod.Spec.SecurityContext?.RunAsGroup);
            }
        }
    }

    /// <summary>The projected token the sidecar alone mounts; the injector produces the same name and path.</summary>
    internal const string TokenVolume = "checkpoint-sidecar-token";

    /// <summary>Where KubernetesClient's in-cluster configuration reads token, ca.crt and namespace.</summary>
    internal const string TokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount";

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task ServiceAccountToken_IsMountedIntoTheSidecarAlone(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            // No automatic token: it would be in every container, the trainer's user code included.
            Assert.Equal(false, pod.Spec.AutomountServiceAccountToken);

            var volume = Manifests.Volume(pod.Spec, TokenVolume);
            var sources = volume.Projected?.Sources;
            Assert.NotNull(sources);
            Assert.Equal(3, sources.Count);
            var token = Assert.Single(sources, s => s.ServiceAccountToken is not null).ServiceAccountToken;
            Assert.Equal("token", token.Path);
            Assert.Equal(3600, token.ExpirationSeconds);
            Assert.Null(token.Audience);
            var ca = Assert.Single(sources, s => s.ConfigMap is not null).ConfigMap;
            Assert.Equal("kube-root-ca.crt", ca.Name);
            var caItem = Assert.Single(ca.Items);
            Assert.Equal(("ca.crt", "ca.crt"), (caItem.Key, caItem.Path));
            var ns = Assert.Single(Assert.Single(sources, s => s.DownwardAPI is not null).DownwardAPI.Items);
            Assert.Equal(("namespace", "metadata.namespace"), (ns.Path, ns.FieldRef?.FieldPath));

            var mount = Manifests.Mount(Manifests.Sidecar(pod.Spec), TokenVolume);
            Assert.Equal(TokenMountPath, mount.MountPath);
            Assert.Equal(true, mount.ReadOnlyProperty);

            // No other container mounts the token, or anything where a client library would look for one.
            var tokenVolumes = pod.Spec.Volumes
                .Where(v => v.Projected?.Sources?.Any(s => s.ServiceAccountToken is not null) == true || v.Secret is not null)
                .Select(v => v.Name)
                .ToHashSet();
            Assert.Equal(TokenVolume, Assert.Single(tokenVolumes));
            foreach (var container in pod.Spec.Containers.Concat(pod.Spec.InitContainers ?? []).Where(c => c.Name != Manifests.SidecarName))
            {
                Assert.DoesNotContain(container.VolumeMounts ?? [], m => tokenVolumes.Contains(m.Name));
                Assert.DoesNotContain(container.VolumeMounts ?? [], m => m.MountPath.StartsWith("/var/run/secrets", StringComparison.Ordinal));
            }
        }
    }

    /// <summary>
    /// The flags torchrun accepts in torch 1.13 (torch/distributed/run.py of Debian's python3-torch 1.13):
    /// underscore spellings only. Current torch accepts these too, beside the dashed ones it added.
    /// </summary>
    private static readonly string[] Torch113TorchrunFlags =
    [
        "--nnodes", "--nproc_per_node", "--rdzv_backend", "--rdzv_endpoint", "--rdzv_id", "--rdzv_conf", "--standalone",
        "--max_restarts", "--monitor_interval", "--start_method", "--role", "--module", "--no_python", "--run_path",
        "--log_dir", "--redirects", "--tee", "--node_rank", "--master_addr", "--master_port",
    ];

    [Theory]
    [MemberData(nameof(MultiPodExamples))]
    public async Task MultiPodExample_TorchrunFlags_AreOnesTorch113Accepts(string example)
    {
        foreach (var pod in await Manifests.PodsAsync(example))
        {
            var trainer = Manifests.Trainer(pod.Spec);
            var command = string.Join(' ', (trainer.Command ?? []).Concat(trainer.Args ?? []));
            var torchrun = command[command.IndexOf("torchrun ", StringComparison.Ordinal)..];
            var flags = Regex.Matches(torchrun, @"(?<=\s)--[a-z_-]+").Select(m => m.Value).ToList();
            Assert.NotEmpty(flags);
            Assert.All(flags, f => Assert.Contains(f, Torch113TorchrunFlags));
        }
    }

    private static readonly string[] DocsNamingTorchrun = ["README.md", "deploy/README.md", "trainer-sdk/python/README.md"];

    [Fact]
    public void Docs_NeverSpellTorch113FlagsWithDashes()
    {
        var dashed = Torch113TorchrunFlags.Where(f => f.Contains('_', StringComparison.Ordinal)).Select(f => f.Replace('_', '-')).ToList();
        var files = DocsNamingTorchrun
            .Select(f => Path.Combine(RepoPaths.Root, f))
            .Concat(Directory.EnumerateFiles(DeployPaths.Deploy, "*.yaml", SearchOption.AllDirectories));
        foreach (var file in files)
        {
            var text = File.ReadAllText(file);
            foreach (var flag in dashed)
            {
                Assert.False(Regex.IsMatch(text, Regex.Escape(flag) + @"\b"), $"{Path.GetRelativePath(RepoPaths.Root, file)} spells {flag}; torch 1.13 accepts only {flag.Replace('-', '_')}");
            }
        }
    }

    public static TheoryData<string> MultiPodExamples => new(Kustomize.MultiPodExamples);

    private static string EntrypointOfDockerfile()
    {
        var dockerfile = File.ReadAllText(Path.Combine(RepoPaths.Root, "Dockerfile.sidecar"));
        var match = Regex.Match(dockerfile, @"^ENTRYPOINT \[""([^""]+)""\]", RegexOptions.Multiline);
        Assert.True(match.Success, "Dockerfile.sidecar has no exec-form ENTRYPOINT");
        return match.Groups[1].Value;
    }
}
