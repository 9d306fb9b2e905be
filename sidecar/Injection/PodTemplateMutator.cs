using System.Globalization;
using YamlDotNet.RepresentationModel;
using static Checkpoint.Sidecar.Injection.YamlTree;

namespace Checkpoint.Sidecar.Injection;

/// <summary>Where CHECKPOINT_JOB_NAME comes from: a pod label set by the kind's controller, or a literal.</summary>
internal sealed record JobNameSource(string? Label, string? Literal)
{
    public static JobNameSource FromLabel(string label) => new(label, null);

    public static JobNameSource FromLiteral(string name) => new(null, name);
}

/// <summary>One pod template to inject, with what its kind says about it.</summary>
/// <param name="Where">The document and path, for messages ("Job/train-llm (document 1) at spec.template").</param>
/// <param name="JobName">The kind's CHECKPOINT_JOB_NAME source; null: the kind has none (a template annotation or --job-name must say).</param>
/// <param name="TrainerName">The container the kind's controller treats as the trainer (PyTorchJob: pytorch), if any.</param>
/// <param name="RunsToCompletion">The pod ends when training does (a Job's), so a regular sidecar must exit then too.</param>
internal sealed record PodTemplate(YamlMappingNode Node, string Where, JobNameSource? JobName, string? TrainerName, bool RunsToCompletion);

/// <summary>
/// The one mutation of a pod template (metadata + spec), used by <c>inject</c> and the webhook: adds the
/// checkpoint sidecar, its volumes, the trainer's mounts, socket variable and preStop hook, and the
/// ServiceAccount token for the sidecar alone. Which container is the trainer: the one the template's
/// annotation or --trainer-container names, else the only container, else the one named by the kind's
/// convention (pytorch, node) or "trainer"; otherwise the template is refused as ambiguous. Only the
/// trainer gets the socket, staging and checkpoint mounts: other containers (log shippers, proxies) are
/// left as they are.
/// </summary>
internal static class PodTemplateMutator
{
    public const string Prefix = "checkpoint-sidecar/";
    public const string InjectedAnnotation = Prefix + "injected";
    public const string TrainerAnnotation = Prefix + "trainer-container";
    public const string JobNameAnnotation = Prefix + "job-name";
    public const string MetricsLabel = Prefix + "metrics";

    public const string SidecarName = "checkpoint-sidecar";
    public const string CopyToolName = "copy-checkpoint-tool";
    public const string TokenVolume = "checkpoint-sidecar-token";
    public const string TokenPath = "/var/run/secrets/kubernetes.io/serviceaccount";

    public const string SocketDir = "/var/run/checkpoint";
    public const string SocketPath = SocketDir + "/sidecar.sock";
    public const string StagingDir = "/checkpoint/staging";
    public const string StorageDir = "/checkpoint/storage";
    public const string ToolsDir = "/checkpoint/tools";
    public const string SidecarBinary = "/usr/local/bin/checkpoint-sidecar";

    private const string SocketVolume = "checkpoint-socket";
    private const string StagingVolume = "checkpoint-staging";
    private const string StorageVolume = "checkpoint-storage";
    private const string ToolsVolume = "checkpoint-tools";

    private static readonly string[] OwnVolumes = [SocketVolume, StagingVolume, StorageVolume, ToolsVolume, TokenVolume];
    private static readonly string[] OwnContainers = [SidecarName, CopyToolName];
    private static readonly string[] OwnPaths = [SocketDir, StagingDir, StorageDir, ToolsDir];

    /// <summary>Injects into <paramref name="template"/> in place.</summary>
    /// <returns>False when the template was injected already (it is left as it is).</returns>
    /// <exception cref="InjectionException">The template cannot be injected; nothing was changed.</exception>
    public static bool Inject(PodTemplate template, InjectionOptions options)
    {
        var where = template.Where;
        var metadata = Map(template.Node, "metadata");
        var annotations = metadata is null ? null : Map(metadata, "annotations");
        if (annotations is not null && Get(annotations, InjectedAnnotation) is not null)
        {
            return false;
        }

        var spec = Map(template.Node, "spec") ?? throw new InjectionException($"{where}: no spec");
        var containers = Seq(spec, "containers");
        if (containers is null || containers.Children.Count == 0)
        {
            throw new InjectionException($"{where}.spec.containers: no containers");
        }

        var initContainers = Seq(spec, "initContainers");
        var all = containers.Children.Concat(initContainers?.Children ?? []).OfType<YamlMappingNode>().ToList();
        foreach (var container in all)
        {
            if (Str(container, "name") is { } name && OwnContainers.Contains(name))
            {
                throw new InjectionException(
                    $"{where}.spec: a container is already named '{name}' but the template has no {InjectedAnnotation} annotation " +
                    "(written by hand?); remove that container to inject, or leave this manifest out of inject");
            }
        }

        foreach (var volume in (Seq(spec, "volumes")?.Children ?? []).OfType<YamlMappingNode>())
        {
            if (Str(volume, "name") is { } name && OwnVolumes.Contains(name))
            {
                throw new InjectionException($"{where}.spec.volumes: a volume is already named '{name}', a name the sidecar's volumes use; rename it");
            }
        }

        foreach (var container in all)
        {
            foreach (var port in (Seq(container, "ports")?.Children ?? []).OfType<YamlMappingNode>())
            {
                if (Str(port, "containerPort") == options.MetricsPort.ToString(CultureInfo.InvariantCulture))
                {
                    throw new InjectionException(
                        $"{where}.spec: container '{Str(container, "name")}' uses port {options.MetricsPort}, the sidecar's metrics port; choose another with --metrics-port");
                }
            }
        }

        var trainer = Trainer(template, containers, annotations, options);
        var trainerName = Str(trainer, "name")!;
        CheckTrainer(where, trainer, trainerName, options);
        var jobName = JobName(template, metadata, annotations, options);

        // G: the pod's own value is the author's choice; the sidecar's fallback setting follows it.
        var grace = Str(spec, "terminationGracePeriodSeconds") is { } text && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var g)
            ? g
            : options.GracePeriodSeconds;
        Set(spec, "terminationGracePeriodSeconds", Number(grace));

        // Least privilege: the trainer (user code) gets no API token; the sidecar mounts one of its own.
        Set(spec, "automountServiceAccountToken", Bool(false));
        if (Str(spec, "serviceAccountName") is null or "")
        {
            Set(spec, "serviceAccountName", String(options.ServiceAccount));
        }

        RemoveAutomountedToken(spec);

        if (metadata is null)
        {
            metadata = new YamlMappingNode();
            template.Node.Children.Insert(0, new YamlScalarNode("metadata"), metadata);
        }

        Set(GetOrAddMap(metadata, "labels"), MetricsLabel, String("true"));
        Set(GetOrAddMap(metadata, "annotations"), InjectedAnnotation, String("true"));

        var native = options.Mode == SidecarMode.Native;
        var sidecar = Sidecar(options, jobName, grace, native, exitWhenTrainersDone: !native && template.RunsToCompletion);
        if (native || options.TrainerPreStop)
        {
            initContainers ??= GetOrAddSeq(spec, "initContainers");
            if (options.TrainerPreStop)
            {
                initContainers.Add(CopyTool(options));
            }

            if (native)
            {
                initContainers.Add(sidecar);
            }
        }

        if (!native)
        {
            containers.Add(sidecar);
        }

        var env = GetOrAddSeq(trainer, "env");
        env.Add(Parse($"{{name: CHECKPOINT_SOCKET_PATH, value: {SocketPath}}}"));
        var mounts = GetOrAddSeq(trainer, "volumeMounts");
        mounts.Add(Parse($"{{name: {SocketVolume}, mountPath: {SocketDir}}}"));
        mounts.Add(Parse($"{{name: {StagingVolume}, mountPath: {StagingDir}}}"));
        mounts.Add(Parse($"{{name: {StorageVolume}, mountPath: {StorageDir}, readOnly: true}}"));
        if (options.TrainerPreStop)
        {
            mounts.Add(Parse($"{{name: {ToolsVolume}, mountPath: {ToolsDir}, readOnly: true}}"));
            // Holds the trainer's SIGTERM back until the checkpoint is committed (deploy/README.md, "torchrun and the grace period").
            var lifecycle = GetOrAddMap(trainer, "lifecycle");
            Set(lifecycle, "preStop", Parse($"exec:\n  command: [\"{ToolsDir}/checkpoint-sidecar\", \"prestop\"]"));
        }

        var volumes = GetOrAddSeq(spec, "volumes");
        volumes.Add(Parse($"{{name: {SocketVolume}, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}"));
        volumes.Add(Parse(options.StagingSize is null
            ? $"{{name: {StagingVolume}, emptyDir: {{}}}}"
            : $"{{name: {StagingVolume}, emptyDir: {{sizeLimit: {options.StagingSize}}}}}"));
        volumes.Add(Parse($"name: {StorageVolume}\npersistentVolumeClaim:\n  claimName: {options.StorageClaim}"));
        if (options.TrainerPreStop)
        {
            volumes.Add(Parse($"{{name: {ToolsVolume}, emptyDir: {{sizeLimit: 64Mi}}}}"));
        }

        volumes.Add(Parse($$"""
            name: {{TokenVolume}}
            projected:
              sources:
                - serviceAccountToken: {path: token, expirationSeconds: 3600}
                - configMap:
                    name: kube-root-ca.crt
                    items: [{key: ca.crt, path: ca.crt}]
                - downwardAPI:
                    items:
                      - path: namespace
                        fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}
            """));
        return true;
    }

    private static YamlMappingNode Trainer(PodTemplate template, YamlSequenceNode containers, YamlMappingNode? annotations, InjectionOptions options)
    {
        var byName = containers.Children.OfType<YamlMappingNode>().Where(c => Str(c, "name") is not null).ToList();
        var chosen = (annotations is null ? null : Str(annotations, TrainerAnnotation)) ?? options.TrainerContainer;
        if (chosen is not null)
        {
            return byName.FirstOrDefault(c => Str(c, "name") == chosen)
                ?? throw new InjectionException(
                    $"{template.Where}.spec.containers: no container named '{chosen}' (the trainer, by {TrainerAnnotation} or --trainer-container); " +
                    $"there are: {string.Join(", ", byName.Select(c => Str(c, "name")))}");
        }

        if (byName.Count == 1)
        {
            return byName[0];
        }

        foreach (var conventional in new[] { template.TrainerName, "trainer" })
        {
            if (conventional is not null && byName.FirstOrDefault(c => Str(c, "name") == conventional) is { } found)
            {
                return found;
            }
        }

        throw new InjectionException(
            $"{template.Where}.spec.containers: which container is the trainer is ambiguous ({string.Join(", ", byName.Select(c => Str(c, "name")))}); " +
            $"name it with --trainer-container NAME or the pod template annotation {TrainerAnnotation}");
    }

    private static void CheckTrainer(string where, YamlMappingNode trainer, string name, InjectionOptions options)
    {
        foreach (var mount in (Seq(trainer, "volumeMounts")?.Children ?? []).OfType<YamlMappingNode>())
        {
            if (Str(mount, "mountPath") is { } path && OwnPaths.Any(own => path.TrimEnd('/') == own || own.StartsWith(path.TrimEnd('/') + "/", StringComparison.Ordinal)))
            {
                throw new InjectionException($"{where}.spec.containers[{name}].volumeMounts: '{path}' is where the sidecar's volumes are mounted; move that mount");
            }
        }

        foreach (var variable in (Seq(trainer, "env")?.Children ?? []).OfType<YamlMappingNode>())
        {
            if (Str(variable, "name") == "CHECKPOINT_SOCKET_PATH")
            {
                throw new InjectionException($"{where}.spec.containers[{name}].env: CHECKPOINT_SOCKET_PATH is set already; remove it (inject sets it)");
            }
        }

        if (options.TrainerPreStop && Map(trainer, "lifecycle") is { } lifecycle && Get(lifecycle, "preStop") is not null)
        {
            throw new InjectionException(
                $"{where}.spec.containers[{name}].lifecycle.preStop: the trainer has a preStop hook of its own; " +
                $"remove it, or keep it with --no-trainer-prestop (and run {ToolsDir}/checkpoint-sidecar prestop from it yourself)");
        }
    }

    private static JobNameSource JobName(PodTemplate template, YamlMappingNode? metadata, YamlMappingNode? annotations, InjectionOptions options)
    {
        if (annotations is not null && Str(annotations, JobNameAnnotation) is { Length: > 0 } annotated)
        {
            return JobNameSource.FromLiteral(annotated);
        }

        if (options.JobName is not null)
        {
            return JobNameSource.FromLiteral(options.JobName);
        }

        return template.JobName ?? throw new InjectionException(
            $"{template.Where}: no job name to give CHECKPOINT_JOB_NAME (the same for every pod of the job and across its restarts); " +
            $"set it with --job-name NAME or the pod annotation {JobNameAnnotation}");
    }

    /// <summary>
    /// The ServiceAccount admission plugin runs before webhooks and has added its token volume
    /// (kube-api-access-*) and a mount of it to every container; with automount off, that is removed
    /// again so the trainer has no token. Volumes of the name written by hand are kept.
    /// </summary>
    private static void RemoveAutomountedToken(YamlMappingNode spec)
    {
        if (Seq(spec, "volumes") is not { } volumes)
        {
            return;
        }

        var removed = volumes.Children.OfType<YamlMappingNode>()
            .Where(v => Str(v, "name") is { } n && n.StartsWith("kube-api-access-", StringComparison.Ordinal)
                && Map(v, "projected") is { } projected
                && (Seq(projected, "sources")?.Children ?? []).OfType<YamlMappingNode>().Any(s => Get(s, "serviceAccountToken") is not null))
            .ToList();
        foreach (var volume in removed)
        {
            volumes.Children.Remove(volume);
            var name = Str(volume, "name");
            foreach (var container in (Seq(spec, "containers")?.Children ?? []).Concat(Seq(spec, "initContainers")?.Children ?? []).OfType<YamlMappingNode>())
            {
                if (Seq(container, "volumeMounts") is { } mounts)
                {
                    foreach (var mount in mounts.Children.OfType<YamlMappingNode>().Where(m => Str(m, "name") == name).ToList())
                    {
                        mounts.Children.Remove(mount);
                    }
                }
            }
        }
    }

    // The image has no shell and no cp: the binary copies itself to where the trainer's preStop hook finds it.
    private static YamlMappingNode CopyTool(InjectionOptions options) => WithSecurityContext(Parse($$"""
        name: {{CopyToolName}}
        image: {{options.Image}}
        command: ["{{SidecarBinary}}", "{{CopyBinaryCommand.Name}}", "{{ToolsDir}}"]
        resources:
          requests: {cpu: 10m, memory: 16Mi}
          limits: {memory: 64Mi}
        securityContext: {}
        volumeMounts:
          - {name: {{ToolsVolume}}, mountPath: {{ToolsDir}} }
        """));

    /// <summary>
    /// Both containers of the sidecar image run as its non-root user (uid 1654) with nothing they do not
    /// need, whatever the pod's own securityContext says (that one is the trainer's, left as it is).
    /// </summary>
    private static YamlMappingNode WithSecurityContext(YamlNode container)
    {
        var map = (YamlMappingNode)container;
        Set(map, "securityContext", Parse("""
            runAsNonRoot: true
            runAsUser: 1654
            runAsGroup: 1654
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
            seccompProfile: {type: RuntimeDefault}
            """));
        return map;
    }

    private static YamlMappingNode Sidecar(InjectionOptions options, JobNameSource jobName, int grace, bool native, bool exitWhenTrainersDone)
    {
        var port = options.MetricsPort.ToString(CultureInfo.InvariantCulture);
        var jobNameEnv = jobName.Label is { } label
            ? $"- name: CHECKPOINT_JOB_NAME\n    valueFrom: {{fieldRef: {{fieldPath: \"metadata.labels['{label}']\"}}}}"
            : $"- {{name: CHECKPOINT_JOB_NAME, value: \"{jobName.Literal}\"}}";
        var sidecar = WithSecurityContext(Parse($$"""
            name: {{SidecarName}}
            image: {{options.Image}}
            env:
              - {name: CHECKPOINT_SOCKET_PATH, value: {{SocketPath}} }
              - {name: CHECKPOINT_STAGING_DIR, value: {{StagingDir}} }
              - {name: CHECKPOINT_STORAGE_DIR, value: {{StorageDir}} }
              - {name: CHECKPOINT_METRICS_PORT, value: "{{port}}"}
              {{jobNameEnv}}
              - {name: CHECKPOINT_GRACE_PERIOD_SECONDS, value: "{{grace}}"}
              - name: POD_NAME
                valueFrom: {fieldRef: {fieldPath: metadata.name} }
              - name: POD_NAMESPACE
                valueFrom: {fieldRef: {fieldPath: metadata.namespace} }
            ports:
              - {name: metrics, containerPort: {{port}} }
            readinessProbe:
              httpGet: {path: /readyz, port: metrics}
              periodSeconds: 2
            livenessProbe:
              httpGet: {path: /healthz, port: metrics}
              periodSeconds: 10
              failureThreshold: 6
            resources:
              requests: {cpu: 250m, memory: 64Mi}
              limits: {memory: 256Mi}
            securityContext: {}
            volumeMounts:
              - {name: {{SocketVolume}}, mountPath: {{SocketDir}} }
              - {name: {{StagingVolume}}, mountPath: {{StagingDir}} }
              - {name: {{StorageVolume}}, mountPath: {{StorageDir}} }
              - {name: {{TokenVolume}}, mountPath: {{TokenPath}}, readOnly: true}
            """));
        var env = (YamlSequenceNode)sidecar.Children[new YamlScalarNode("env")];
        if (exitWhenTrainersDone)
        {
            // A Job's pod completes only when every container has exited.
            env.Children.Insert(env.Children.Count - 2, Parse("{name: CHECKPOINT_EXIT_WHEN_TRAINERS_DONE, value: \"true\"}"));
        }

        if (!native)
        {
            return sidecar;
        }

        // Native: an init container that runs for the life of the pod; the trainer starts once the
        // startup probe passes (the socket listens). Its SIGTERM comes after the trainer has exited, so
        // the flush starts from its preStop hook.
        var initSidecar = new YamlMappingNode();
        foreach (var (key, value) in sidecar.Children)
        {
            initSidecar.Add(key, value);
            if (key is YamlScalarNode { Value: "image" })
            {
                initSidecar.Add("restartPolicy", "Always");
                initSidecar.Add("lifecycle", Parse($"preStop:\n  exec:\n    command: [\"{SidecarBinary}\", \"prestop\"]"));
            }
            else if (key is YamlScalarNode { Value: "ports" })
            {
                initSidecar.Add("startupProbe", Parse("httpGet: {path: /readyz, port: metrics}\nperiodSeconds: 1\nfailureThreshold: 30"));
            }
        }

        return initSidecar;
    }
}
