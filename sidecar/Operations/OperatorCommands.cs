using System.Text.Json;
using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Hosting;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Operations;

/// <summary>
/// <c>checkpoint-sidecar list|verify|inspect|prune|version|help</c>: what an operator on call runs
/// against the checkpoint storage, with the habits of restic and velero (a listing, an independent
/// verification whose exit code says, a safe prune, <c>--json</c> on each). Every command reads the
/// storage through the sidecar's own readers, so what it reports is what a resuming sidecar would see.
/// </summary>
public static class OperatorCommands
{
    public const int Success = 0;

    /// <summary>A checkpoint failed verification, or storage could not be read.</summary>
    public const int Failed = 1;

    public const int UsageError = 2;

    /// <summary>Reads every file in pieces this large when hashing.</summary>
    internal const int BufferSize = 1 << 20;

    private static readonly string[] Names = ["list", "verify", "inspect", "prune", "version", "help"];

    private static readonly string[] JobFlags = ["--storage", "--namespace", "--job"];

    /// <summary>
    /// True when the command line is one of these commands, or a bare word that is no command at all
    /// (a typo must be a usage error, not the sidecar starting). Commands of the sidecar's own
    /// (<c>prestop</c>, ...) must be dispatched before this is asked.
    /// </summary>
    public static bool Handles(IReadOnlyList<string> args) =>
        args.Count > 0 && (Names.Contains(args[0]) || args[0] is "--version" or "--help" or "-h" || IsBareWord(args[0]));

    public static int Run(IReadOnlyList<string> args) =>
        Run(args, Console.Out, Console.Error, Environment.GetEnvironmentVariable, TimeProvider.System, CancellationToken.None);

    /// <param name="environment">Where the defaults of --storage, --namespace and --job come from (the sidecar's variables).</param>
    internal static int Run(
        IReadOnlyList<string> args, TextWriter output, TextWriter error, Func<string, string?> environment, TimeProvider time,
        CancellationToken cancellationToken)
    {
        var command = args.Count > 0 ? args[0] : "help";
        var rest = args.Skip(1).ToList();
        try
        {
            var context = new CommandContext(output, environment, time, cancellationToken);
            return command switch
            {
                "help" or "--help" or "-h" => Help(output),
                "version" or "--version" => Version(context, Parse(command, rest, [], ["--json"], 0)),
                "list" => OperatorReports.List(context, Parse(command, rest, JobFlags, ["--json"], 0)),
                "verify" => OperatorReports.Verify(context, Parse(command, rest, JobFlags, ["--json", "--all"], 1)),
                "inspect" => OperatorReports.Inspect(context, Parse(command, rest, JobFlags, ["--json"], 1)),
                "prune" => OperatorReports.Prune(context, Parse(command, rest, [.. JobFlags, "--keep"], ["--json", "--dry-run"], 0)),
                _ => throw new UsageException($"unknown command {OperatorText.Quote(command)}; the commands are {string.Join(", ", Names)}"),
            };
        }
        catch (UsageException e)
        {
            error.WriteLine($"checkpoint-sidecar {OperatorText.Safe(command)}: {e.Message}");
            error.WriteLine("Run 'checkpoint-sidecar help' for usage.");
            return UsageError;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"checkpoint-sidecar {command}: {OperatorText.Safe(StorageErrors.Describe(e))}");
            return Failed;
        }
    }

    private static OperatorArguments Parse(string command, List<string> rest, IReadOnlyCollection<string> valueFlags, IReadOnlyCollection<string> switches, int maxPositionals)
    {
        if (rest is ["--help" or "-h"])
        {
            throw new UsageException($"usage: {Usage.First(u => u.StartsWith(command, StringComparison.Ordinal))}");
        }

        return OperatorArguments.Parse(command, rest, valueFlags, switches, maxPositionals);
    }

    private static bool IsBareWord(string argument) =>
        argument.Length > 0 && !argument.StartsWith('-') && !argument.Contains('=', StringComparison.Ordinal) && !argument.Contains('/', StringComparison.Ordinal);

    private static int Version(CommandContext context, OperatorArguments arguments)
    {
        if (arguments.Has("--json"))
        {
            context.WriteJson(new VersionReport(BuildInfo.Version, BuildInfo.Commit.Length == 0 ? null : BuildInfo.Commit), OperatorJsonContext.Default.VersionReport);
        }
        else
        {
            context.Output.WriteLine(BuildInfo.Describe());
        }

        return Success;
    }

    private static readonly string[] Usage =
    [
        "list    [--json]                          checkpoints of the job: state, size, age, which one resume picks",
        "verify  [ID|STEP | --all] [--json]        re-read and re-hash every file against its manifest (default: what resume picks)",
        "inspect ID|STEP [--json]                  the manifest(s) and the flush records, phases against the grace period",
        "prune   --keep N [--dry-run] [--json]     remove older checkpoints as the sidecar's retention does; safe with live pods",
        "version [--json]                          the version and commit (also --version)",
        "help                                      this text",
    ];

    private static int Help(TextWriter output)
    {
        output.WriteLine($"{BuildInfo.Describe()}: checkpoints of preemptible training jobs");
        output.WriteLine();
        output.WriteLine("Usage:");
        output.WriteLine("  checkpoint-sidecar                  run the sidecar (configured by environment variables, see README)");
        output.WriteLine("  checkpoint-sidecar prestop          from a preStop hook: checkpoint now, return when it is safe");
        foreach (var line in Usage)
        {
            output.WriteLine("  checkpoint-sidecar " + line);
        }

        output.WriteLine();
        output.WriteLine("Every command but version and help finds the job's checkpoints in <storage>/<namespace>/<job>:");
        output.WriteLine("  --storage DIR     the checkpoint storage (default: $CHECKPOINT_STORAGE_DIR)");
        output.WriteLine("  --namespace NS    the job's namespace (default: $POD_NAMESPACE, else 'default')");
        output.WriteLine("  --job JOB         the job's name on storage (default: $CHECKPOINT_JOB_NAME, else 'default')");
        output.WriteLine("  --json            a report in JSON (schema: README, \"Operator CLI\")");
        output.WriteLine();
        output.WriteLine("Exit codes: 0 all good; 1 a checkpoint failed verification, or storage could not be read; 2 usage or configuration error.");
        return Success;
    }

    /// <summary>What every command is given: where to write, the environment, the clock.</summary>
    internal sealed class CommandContext(TextWriter output, Func<string, string?> environment, TimeProvider time, CancellationToken cancellationToken)
    {
        public TextWriter Output => output;

        public TimeProvider Time => time;

        public CancellationToken CancellationToken => cancellationToken;

        public void WriteJson<T>(T report, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
            output.WriteLine(JsonSerializer.Serialize(report, type));

        /// <summary>The job's checkpoints, from the flags or the sidecar's environment variables.</summary>
        /// <exception cref="UsageException">The storage is not given or not a directory, or a name is not one directory name.</exception>
        public CheckpointInventory OpenJob(OperatorArguments arguments)
        {
            var storage = FlagOrEnvironment(arguments, "--storage", "CHECKPOINT_STORAGE_DIR")
                ?? throw new UsageException("--storage is not given and CHECKPOINT_STORAGE_DIR is not set: name the checkpoint storage directory");
            if (!Directory.Exists(storage))
            {
                throw new UsageException($"--storage: {OperatorText.Quote(storage)} does not exist or is not a directory");
            }

            var podNamespace = FlagOrEnvironment(arguments, "--namespace", "POD_NAMESPACE") ?? "default";
            var job = FlagOrEnvironment(arguments, "--job", "CHECKPOINT_JOB_NAME") ?? "default";
            foreach (var (flag, value) in new[] { ("--namespace", podNamespace), ("--job", job) })
            {
                if (!SidecarOptionsValidator.IsPathSegment(value))
                {
                    throw new UsageException($"{flag}: {OperatorText.Quote(value)} must be a single directory name (no '/', not '.' or '..')");
                }
            }

            var layout = new CheckpointLayout(storage, podNamespace, job);
            return new CheckpointInventory(new CheckpointStore(layout, NullLogger<CheckpointStore>.Instance), BufferSize);
        }

        private string? FlagOrEnvironment(OperatorArguments arguments, string flag, string variable)
        {
            var value = arguments.Value(flag);
            if (value is not null)
            {
                return value.Length > 0 ? value : throw new UsageException($"{flag} is empty");
            }

            value = environment(variable);
            return string.IsNullOrEmpty(value) ? null : value;
        }
    }
}
