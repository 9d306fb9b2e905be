using System.Globalization;
using System.Text.RegularExpressions;

namespace Checkpoint.Sidecar.Injection;

/// <summary>How the sidecar is run beside a trainer.</summary>
internal enum SidecarMode
{
    /// <summary>An init container with <c>restartPolicy: Always</c> (Kubernetes 1.29+).</summary>
    Native,

    /// <summary>A second container; in run-to-completion pods it exits once the trainers are done.</summary>
    Regular,
}

/// <summary>What <c>inject</c> and the webhook add; the same settings for both (command-line flags).</summary>
internal sealed partial record InjectionOptions
{
    public const string DefaultStorageClaim = "training-checkpoints";

    public string Image { get; init; } = "checkpoint-sidecar:" + (typeof(InjectionOptions).Assembly.GetName().Version?.ToString(3) ?? "latest");

    public string StorageClaim { get; init; } = DefaultStorageClaim;

    public SidecarMode Mode { get; init; } = SidecarMode.Native;

    /// <summary>The trainer container, for every pod template; a template's annotation wins.</summary>
    public string? TrainerContainer { get; init; }

    /// <summary>A literal CHECKPOINT_JOB_NAME, for every pod template; a template's annotation wins.</summary>
    public string? JobName { get; init; }

    /// <summary>G for pod templates that set no terminationGracePeriodSeconds (an existing value is kept).</summary>
    public int GracePeriodSeconds { get; init; } = 60;

    public int MetricsPort { get; init; } = 9400;

    /// <summary>sizeLimit of the staging emptyDir; null: none (bounded by the node's ephemeral storage).</summary>
    public string? StagingSize { get; init; }

    /// <summary>Set as serviceAccountName where a pod template names none.</summary>
    public string ServiceAccount { get; init; } = "checkpoint-sidecar";

    /// <summary>Give the trainer the <c>prestop</c> hook (and the init container that copies the binary for it).</summary>
    public bool TrainerPreStop { get; init; } = true;

    public const string Usage =
        "  --image IMAGE               sidecar image (default checkpoint-sidecar:<version>)\n" +
        "  --storage-claim NAME        PersistentVolumeClaim of the checkpoints (default training-checkpoints)\n" +
        "  --mode native|regular       native sidecar (Kubernetes 1.29+, default) or a regular container\n" +
        "  --trainer-container NAME    the trainer container (else annotation checkpoint-sidecar/trainer-container,\n" +
        "                              the only container, or one named pytorch/node/trainer by kind)\n" +
        "  --job-name NAME             literal CHECKPOINT_JOB_NAME (else annotation checkpoint-sidecar/job-name,\n" +
        "                              or the job-name label of the kind's controller)\n" +
        "  --grace-period SECONDS      terminationGracePeriodSeconds where the pod sets none (default 60)\n" +
        "  --metrics-port PORT         the sidecar's metrics/probe port (default 9400)\n" +
        "  --staging-size QUANTITY     sizeLimit of the staging emptyDir (default none)\n" +
        "  --service-account NAME      serviceAccountName where the pod names none (default checkpoint-sidecar)\n" +
        "  --no-trainer-prestop        no preStop hook on the trainer (keep the trainer's own)\n";

    /// <summary>
    /// Reads the flags this type knows from <paramref name="args"/>; the others are handed to
    /// <paramref name="other"/>, which returns how many arguments it consumed (0: unknown).
    /// </summary>
    /// <exception cref="ArgumentException">An unknown flag, a missing or bad value.</exception>
    public static InjectionOptions Parse(IReadOnlyList<string> args, Func<IReadOnlyList<string>, int, int> other)
    {
        var options = new InjectionOptions();
        for (var i = 0; i < args.Count; i++)
        {
            var flag = args[i];
            string Value()
            {
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw new ArgumentException($"{flag} needs a value");
                }

                return args[++i];
            }

            options = flag switch
            {
                "--image" => options with { Image = Checked(flag, Value(), ImagePattern()) },
                "--storage-claim" => options with { StorageClaim = Checked(flag, Value(), DnsSubdomain()) },
                "--mode" => options with
                {
                    Mode = Value() switch
                    {
                        "native" => SidecarMode.Native,
                        "regular" => SidecarMode.Regular,
                        var v => throw new ArgumentException($"--mode must be native or regular, not '{v}'"),
                    },
                },
                "--trainer-container" => options with { TrainerContainer = Checked(flag, Value(), DnsLabel()) },
                "--job-name" => options with { JobName = Checked(flag, Value(), DnsSubdomain()) },
                "--grace-period" => options with { GracePeriodSeconds = Int(flag, Value(), 1, 86_400) },
                "--metrics-port" => options with { MetricsPort = Int(flag, Value(), 1, 65_535) },
                "--staging-size" => options with { StagingSize = Checked(flag, Value(), Quantity()) },
                "--service-account" => options with { ServiceAccount = Checked(flag, Value(), DnsSubdomain()) },
                "--no-trainer-prestop" => options with { TrainerPreStop = false },
                _ => Other(),
            };

            InjectionOptions Other()
            {
                var used = other(args, i);
                if (used == 0)
                {
                    throw new ArgumentException($"unknown argument '{flag}'");
                }

                i += used - 1;
                return options;
            }
        }

        return options;
    }

    private static string Checked(string flag, string value, Regex pattern) =>
        pattern.IsMatch(value) ? value : throw new ArgumentException($"{flag}: '{value}' is not a valid value");

    private static int Int(string flag, string value, int min, int max) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new ArgumentException($"{flag} must be a whole number from {min} to {max}, not '{value}'");

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    private static partial Regex DnsLabel();

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]
    private static partial Regex DnsSubdomain();

    // Registry/repository[:tag][@digest]: no spaces, quotes or YAML syntax.
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")]
    private static partial Regex ImagePattern();

    [GeneratedRegex(@"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")]
    private static partial Regex Quantity();
}
