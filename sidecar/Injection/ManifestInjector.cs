using System.Text;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;
using static Checkpoint.Sidecar.Injection.YamlTree;

namespace Checkpoint.Sidecar.Injection;

/// <summary>
/// Finds the pod templates of each kind it knows in a YAML stream and injects them
/// (<see cref="PodTemplateMutator"/>). Documents it does not change are written back as they were read,
/// comments and all; a changed document keeps its key order, quoting, flow style and leading comments
/// (comments inside it are lost: YamlDotNet's node tree does not hold them).
/// </summary>
internal static class ManifestInjector
{
    private const string JobSetNameLabel = "jobset.sigs.k8s.io/jobset-name";
    private const string KubeflowJobNameLabel = "training.kubeflow.org/job-name";
    private const string BatchJobNameLabel = "batch.kubernetes.io/job-name";

    /// <summary>Injects every document of <paramref name="yaml"/>.</summary>
    /// <exception cref="InjectionException">A document cannot be injected (or parsed); the message names it.</exception>
    public static string InjectStream(string yaml, InjectionOptions options)
    {
        var stream = new YamlStream();
        var parser = new MarkingParser(new Parser(new StringReader(yaml)));
        try
        {
            stream.Load(parser);
        }
        catch (YamlException e)
        {
            throw new InjectionException($"not valid YAML: line {e.Start.Line}, column {e.Start.Column}: {e.Message}");
        }

        var lineStarts = parser.DocumentStarts.Select(index => LineStart(yaml, index)).ToList();
        var output = new StringBuilder(yaml.Length * 2);
        for (var i = 0; i < stream.Documents.Count; i++)
        {
            var from = i == 0 ? 0 : lineStarts[i];
            var to = i + 1 < lineStarts.Count ? lineStarts[i + 1] : yaml.Length;
            var original = yaml[from..to];
            var document = stream.Documents[i];
            if (!InjectDocument(document.RootNode, $"document {i + 1}", options))
            {
                output.Append(original);
                continue;
            }

            output.Append(LeadingLines(original, parser.Explicit[i]));
            output.Append(Emit(document.RootNode));
        }

        return output.ToString();
    }

    /// <summary>Injects the pod templates of one manifest in place.</summary>
    /// <returns>Whether anything changed (false for other kinds and for templates injected already).</returns>
    public static bool InjectDocument(YamlNode root, string document, InjectionOptions options)
    {
        if (root is not YamlMappingNode manifest)
        {
            return false;
        }

        var kind = Str(manifest, "kind") ?? "";
        var apiVersion = Str(manifest, "apiVersion") ?? "";
        var name = Map(manifest, "metadata") is { } metadata ? Str(metadata, "name") : null;
        var where = $"{document} ({kind}/{name ?? "<no name>"})";
        var group = apiVersion.Contains('/', StringComparison.Ordinal) ? apiVersion[..apiVersion.IndexOf('/', StringComparison.Ordinal)] : "";
        var changed = false;
        switch (group, kind)
        {
            case ("batch", "Job"):
                changed = InjectJob(Map(manifest, "spec"), where + " at spec", JobNameSource.FromLabel(BatchJobNameLabel), null, options);
                break;
            case ("jobset.x-k8s.io", "JobSet"):
                foreach (var (job, path) in ReplicatedJobs(manifest, "spec", where, onlyNamed: null))
                {
                    changed |= InjectJob(job, path, JobNameSource.FromLabel(JobSetNameLabel), null, options);
                }

                break;
            case ("kubeflow.org", "PyTorchJob"):
                var replicas = Map(manifest, "spec") is { } pytorchSpec ? Map(pytorchSpec, "pytorchReplicaSpecs") : null;
                if (replicas is null || replicas.Children.Count == 0)
                {
                    throw new InjectionException($"{where} at spec.pytorchReplicaSpecs: no replica specs");
                }

                foreach (var (role, replica) in replicas.Children)
                {
                    var path = $"{where} at spec.pytorchReplicaSpecs.{(role as YamlScalarNode)?.Value}.template";
                    var template = (replica as YamlMappingNode) is { } r ? Map(r, "template") : null;
                    // Master and Worker often share one template (a YAML alias): the second finds it injected.
                    changed |= PodTemplateMutator.Inject(
                        new PodTemplate(template ?? throw new InjectionException($"{path}: no pod template"), path, JobNameSource.FromLabel(KubeflowJobNameLabel), "pytorch", RunsToCompletion: true),
                        options);
                }

                break;
            case ("trainer.kubeflow.org", "TrainJob"):
                throw new InjectionException(
                    $"{where}: a TrainJob has no pod template to add a container to (its podTemplateOverrides change only env, " +
                    "volume mounts and a few pod fields of existing containers). Inject the runtime it refers to instead " +
                    "(spec.runtimeRef: kubectl get clustertrainingruntime NAME -o yaml | checkpoint-sidecar inject -f - | kubectl apply -f -), " +
                    "or label the TrainJob's pods for the injector webhook (deploy/injector)");
            case ("trainer.kubeflow.org", "TrainingRuntime" or "ClusterTrainingRuntime"):
                // The JobSet template of every TrainJob that uses this runtime; only the training nodes
                // (replicated job "node") checkpoint, not the dataset and model initializers.
                var template2 = Map(manifest, "spec") is { } runtimeSpec ? Map(runtimeSpec, "template") : null;
                var jobs = template2 is null ? [] : ReplicatedJobs(template2, "spec", where + " at spec.template", onlyNamed: "node").ToList();
                if (jobs.Count == 0)
                {
                    throw new InjectionException($"{where} at spec.template.spec.replicatedJobs: no replicated job named 'node' (the trainer nodes) to inject");
                }

                foreach (var (job, path) in jobs)
                {
                    // A TrainJob runs as a JobSet of its own name.
                    changed |= InjectJob(job, path, JobNameSource.FromLabel(JobSetNameLabel), "node", options);
                }

                break;
            case ("apps", "Deployment" or "StatefulSet"):
                var spec = Map(manifest, "spec") ?? throw new InjectionException($"{where}: no spec");
                changed = PodTemplateMutator.Inject(
                    new PodTemplate(Map(spec, "template") ?? throw new InjectionException($"{where} at spec.template: no pod template"),
                        where + " at spec.template", name is null ? null : JobNameSource.FromLiteral(name), null, RunsToCompletion: false),
                    options);
                break;
            case ("", "Pod") when apiVersion == "v1":
                changed = PodTemplateMutator.Inject(new PodTemplate(manifest, where, PodJobName(manifest), null, RunsToCompletion(manifest)), options);
                break;
        }

        return changed;
    }

    /// <summary>
    /// A pod's job name, from the label its controller set (a JobSet's, a Kubeflow job's, then a batch
    /// Job's: the job whose pods checkpoint together), else its own name (a bare pod).
    /// </summary>
    private static JobNameSource? PodJobName(YamlMappingNode pod)
    {
        var metadata = Map(pod, "metadata");
        var labels = metadata is null ? null : Map(metadata, "labels");
        foreach (var label in new[] { JobSetNameLabel, KubeflowJobNameLabel, BatchJobNameLabel })
        {
            if (labels is not null && Str(labels, label) is { Length: > 0 })
            {
                return JobNameSource.FromLabel(label);
            }
        }

        return metadata is not null && Str(metadata, "name") is { Length: > 0 } name ? JobNameSource.FromLiteral(name) : null;
    }

    private static bool RunsToCompletion(YamlMappingNode pod) =>
        Map(pod, "spec") is { } spec && Str(spec, "restartPolicy") is "Never" or "OnFailure";

    private static IEnumerable<(YamlMappingNode? JobSpec, string Path)> ReplicatedJobs(YamlMappingNode parent, string specKey, string where, string? onlyNamed)
    {
        var jobs = Map(parent, specKey) is { } spec ? Seq(spec, "replicatedJobs") : null;
        if (jobs is null || jobs.Children.Count == 0)
        {
            throw new InjectionException($"{where}.{specKey}.replicatedJobs: no replicated jobs");
        }

        for (var i = 0; i < jobs.Children.Count; i++)
        {
            if (jobs.Children[i] is not YamlMappingNode job || (onlyNamed is not null && Str(job, "name") != onlyNamed))
            {
                continue;
            }

            yield return (Map(job, "template") is { } template ? Map(template, "spec") : null, $"{where}.{specKey}.replicatedJobs[{i}].template.spec");
        }
    }

    /// <summary>A batch Job spec (a Job's, or a JobSet's child Job's): its pod template, and the failure policy around it.</summary>
    private static bool InjectJob(YamlMappingNode? jobSpec, string where, JobNameSource jobName, string? trainerName, InjectionOptions options)
    {
        if (jobSpec is null)
        {
            throw new InjectionException($"{where}: no Job spec");
        }

        var template = Map(jobSpec, "template") ?? throw new InjectionException($"{where}.template: no pod template");
        if (!PodTemplateMutator.Inject(new PodTemplate(template, where + ".template", jobName, trainerName, RunsToCompletion: true), options))
        {
            return false;
        }

        var podSpec = Map(template, "spec")!;
        // podFailurePolicy needs restartPolicy Never (with OnFailure the kubelet restarts containers in place).
        if (Str(podSpec, "restartPolicy") == "Never")
        {
            var ignoreDisruption = Parse("action: Ignore\nonPodConditions:\n  - {type: DisruptionTarget, status: \"True\"}");
            if (Map(jobSpec, "podFailurePolicy") is { } policy && Seq(policy, "rules") is { } rules)
            {
                var hasDisruptionRule = rules.Children.OfType<YamlMappingNode>().Any(rule =>
                    (Seq(rule, "onPodConditions")?.Children ?? []).OfType<YamlMappingNode>().Any(c => Str(c, "type") == "DisruptionTarget"));
                if (!hasDisruptionRule)
                {
                    // First: a preempted pod is replaced and resumes; it must not count, whatever its exit code.
                    rules.Children.Insert(0, ignoreDisruption);
                }
            }
            else
            {
                var rules2 = new YamlSequenceNode(ignoreDisruption);
                if (options.Mode == SidecarMode.Regular)
                {
                    // A bad setting: every other pod would fail the same way.
                    rules2.Add(Parse($"action: FailJob\nonExitCodes: {{containerName: {PodTemplateMutator.SidecarName}, operator: In, values: [2]}}"));
                }

                Set(jobSpec, "podFailurePolicy", new YamlMappingNode("rules", rules2));
            }
        }

        // The replacement pod starts only once the old one (and its flush) is gone: never two sidecars
        // writing one shard. Kubernetes 1.29+, like native sidecars.
        if (options.Mode == SidecarMode.Native && Get(jobSpec, "podReplacementPolicy") is null)
        {
            Set(jobSpec, "podReplacementPolicy", String("Failed"));
        }

        return true;
    }

    /// <summary>The lines before the document's first content (comments, blank lines, the <c>---</c> marker), kept as they were.</summary>
    private static string LeadingLines(string original, bool explicitStart)
    {
        var end = 0;
        var sawMarker = false;
        while (end < original.Length)
        {
            var newline = original.IndexOf('\n', end);
            var lineEnd = newline < 0 ? original.Length : newline + 1;
            var line = original[end..lineEnd].Trim();
            if (line.StartsWith("---", StringComparison.Ordinal) && (line.Length == 3 || line[3] is ' ' or '#'))
            {
                if (line.Length > 3 && line[3..].Trim() is { Length: > 0 } rest && !rest.StartsWith('#'))
                {
                    break;
                }

                sawMarker = true;
            }
            else if (line.Length > 0 && !line.StartsWith('#'))
            {
                break;
            }

            end = lineEnd;
        }

        return (explicitStart && !sawMarker ? "---\n" : "") + original[..end];
    }

    private static int LineStart(string text, long index)
    {
        var i = (int)Math.Min(index, text.Length);
        while (i > 0 && text[i - 1] != '\n')
        {
            i--;
        }

        return i;
    }

    /// <summary>One document as YAML, in the layout of the examples (two-space indent, indented sequences).</summary>
    public static string Emit(YamlNode root)
    {
        using var writer = new StringWriter();
        var settings = EmitterSettings.Default.WithBestIndent(2).WithBestWidth(int.MaxValue).WithIndentedSequences().WithNewLine("\n");
        new YamlStream(new YamlDocument(root)).Save(new Emitter(writer, settings), assignAnchors: false);
        var text = writer.ToString();
        // A document that ends the stream gets a "..." marker from the emitter; the stream needs none.
        return text.EndsWith("...\n", StringComparison.Ordinal) ? text[..^4] : text;
    }

    /// <summary>Passes the parser's events through, noting where each document starts.</summary>
    private sealed class MarkingParser(IParser inner) : IParser
    {
        public List<long> DocumentStarts { get; } = [];

        public List<bool> Explicit { get; } = [];

        public ParsingEvent? Current => inner.Current;

        public bool MoveNext()
        {
            var moved = inner.MoveNext();
            if (moved && inner.Current is DocumentStart start)
            {
                DocumentStarts.Add(start.Start.Index);
                Explicit.Add(!start.IsImplicit);
            }

            return moved;
        }
    }
}
