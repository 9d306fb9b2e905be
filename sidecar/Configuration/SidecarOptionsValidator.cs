using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Configuration;

/// <summary>
/// Rejects a bad setting at start, naming it, rather than at the first preemption when the
/// checkpoint it would have saved is lost.
/// </summary>
public sealed partial class SidecarOptionsValidator : IValidateOptions<SidecarOptions>
{
    /// <summary>The 107 bytes of a Unix socket path, less the private directory the socket is first bound in.</summary>
    public const int MaxSocketPathBytes = 107 - 7;

    public const double MaxFirstTrainerTimeoutSeconds = 86400;

    /// <summary>1 TiB/s: beyond any storage, and far from where the byte count overflows.</summary>
    public const double MaxPeriodicRateMiBPerSecond = 1024 * 1024;

    public ValidateOptionsResult Validate(string? name, SidecarOptions options)
    {
        var errors = new List<string>();

        RequireWritableDirectory(errors, "CHECKPOINT_STAGING_DIR", options.StagingDir);
        RequireWritableDirectory(errors, "CHECKPOINT_STORAGE_DIR", options.StorageDir);

        if (string.IsNullOrWhiteSpace(options.SocketPath))
        {
            errors.Add("CHECKPOINT_SOCKET_PATH: must name the Unix socket file to serve on.");
        }
        else if (!Path.IsPathFullyQualified(options.SocketPath))
        {
            errors.Add($"CHECKPOINT_SOCKET_PATH: '{options.SocketPath}' must be an absolute path.");
        }
        else if (System.Text.Encoding.UTF8.GetByteCount(options.SocketPath) > MaxSocketPathBytes)
        {
            errors.Add($"CHECKPOINT_SOCKET_PATH: '{options.SocketPath}' is longer than {MaxSocketPathBytes} bytes "
                + $"(a Unix socket path may have 107, and the socket is first bound at '<path>{Hosting.SocketFile.BindSuffix}').");
        }
        else
        {
            var socketDir = Path.GetDirectoryName(options.SocketPath)!;
            RequireWritableDirectory(errors, "CHECKPOINT_SOCKET_PATH", socketDir, "the directory of ");
        }

        if (!double.IsFinite(options.PodAnnotationIntervalSeconds) || options.PodAnnotationIntervalSeconds is < 0 or (> 0 and < 1))
        {
            errors.Add($"CHECKPOINT_POD_ANNOTATION_INTERVAL_SECONDS: {options.PodAnnotationIntervalSeconds} must be 0 (no pod annotations) or at least 1 second.");
        }

        if (options.MtbfMinPreemptions is < 1 or > 1000)
        {
            errors.Add($"CHECKPOINT_MTBF_MIN_PREEMPTIONS: {options.MtbfMinPreemptions} must be between 1 and 1000.");
        }

        if (!double.IsFinite(options.MtbfPriorSeconds) || options.MtbfPriorSeconds < 0 || options.MtbfPriorSeconds > FlushRecord.MaxPlausibleSeconds)
        {
            errors.Add($"CHECKPOINT_MTBF_PRIOR_SECONDS: {options.MtbfPriorSeconds} must be 0 (no prior) or a number of seconds up to a year.");
        }

        // 0 binds any free port (local runs and tests); the ready log line names the one bound.
        if (options.MetricsPort is < 0 or > 65535)
        {
            errors.Add($"CHECKPOINT_METRICS_PORT: {options.MetricsPort} is not a TCP port (1-65535, or 0 for any free port).");
        }

        if (!double.IsFinite(options.GracePeriodSeconds) || options.GracePeriodSeconds < 0)
        {
            errors.Add($"CHECKPOINT_GRACE_PERIOD_SECONDS: {options.GracePeriodSeconds} must be zero or more seconds.");
        }

        if (!double.IsFinite(options.SafetyMarginSeconds) || options.SafetyMarginSeconds < 0)
        {
            errors.Add($"CHECKPOINT_SAFETY_MARGIN_SECONDS: {options.SafetyMarginSeconds} must be zero or more seconds.");
        }

        if (!(options.JobCommitTimeoutSeconds > 0) || double.IsInfinity(options.JobCommitTimeoutSeconds))
        {
            errors.Add($"CHECKPOINT_JOB_COMMIT_TIMEOUT_SECONDS: {options.JobCommitTimeoutSeconds} must be a positive number of seconds.");
        }

        // TimeSpan.FromSeconds throws beyond about 29,000 years; a day is far past any pod's start-up.
        if (options.FirstTrainerTimeoutSeconds is { } firstTrainer && !(firstTrainer >= 0 && firstTrainer <= MaxFirstTrainerTimeoutSeconds))
        {
            errors.Add($"CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS: {firstTrainer} must be between 0 (wait for ever) and {MaxFirstTrainerTimeoutSeconds} seconds.");
        }

        if (options.PeriodicNice is < 0 or > 19)
        {
            errors.Add($"CHECKPOINT_PERIODIC_NICE: {options.PeriodicNice} must be between 0 (periodic uploads at the sidecar's own priority) and 19 (the lowest).");
        }

        if (options.PeriodicIoClass is not (SidecarOptions.IoClassIdle or SidecarOptions.IoClassBestEffort or SidecarOptions.IoClassNone))
        {
            errors.Add($"CHECKPOINT_PERIODIC_IO_CLASS: {UserText.Quote(options.PeriodicIoClass)} must be '{SidecarOptions.IoClassIdle}', "
                + $"'{SidecarOptions.IoClassBestEffort}' (its lowest level) or '{SidecarOptions.IoClassNone}' (unchanged).");
        }

        if (!double.IsFinite(options.PeriodicRateMiBPerSecond) || options.PeriodicRateMiBPerSecond is < 0 or (> 0 and < 1) || options.PeriodicRateMiBPerSecond > MaxPeriodicRateMiBPerSecond)
        {
            errors.Add($"CHECKPOINT_PERIODIC_RATE_MIB_PER_SECOND: {options.PeriodicRateMiBPerSecond} must be 0 (no limit) or a rate from 1 to {MaxPeriodicRateMiBPerSecond} MiB/s.");
        }

        if (options.Verify is not (SidecarOptions.VerifyReadBack or SidecarOptions.VerifyReadBackAlways or SidecarOptions.VerifyWriteHash))
        {
            errors.Add($"CHECKPOINT_VERIFY: {UserText.Quote(options.Verify)} must be '{SidecarOptions.VerifyReadBack}' (re-read every byte from storage "
                + "unless a preemption's deadline leaves no time), "
                + $"'{SidecarOptions.VerifyReadBackAlways}' (re-read every byte, deadline or not) "
                + $"or '{SidecarOptions.VerifyWriteHash}' (trust the hash taken while writing, and the fsync).");
        }

        if (options.PodName.Length > 0 && !PodNamePattern().IsMatch(options.PodName))
        {
            errors.Add($"POD_NAME: {UserText.Quote(options.PodName)} is not a Kubernetes pod name (lowercase letters, digits, '-' and '.'); "
                + "set it from the downward API (fieldRef metadata.name).");
        }

        if (options.Keep < 1)
        {
            errors.Add($"CHECKPOINT_KEEP: {options.Keep} must be at least 1 (the latest committed checkpoint is always kept).");
        }

        if (options.CopyParallelism is < 1 or > 64)
        {
            errors.Add($"CHECKPOINT_COPY_PARALLELISM: {options.CopyParallelism} must be between 1 and 64.");
        }

        if (options.CopyBufferKiB is < 64 or > 65536)
        {
            errors.Add($"CHECKPOINT_COPY_BUFFER_KIB: {options.CopyBufferKiB} must be between 64 and 65536.");
        }

        if (options.MaxReportKiB is < 64 or > 65536)
        {
            errors.Add($"CHECKPOINT_MAX_REPORT_KIB: {options.MaxReportKiB} must be between 64 and 65536.");
        }

        if (!string.IsNullOrEmpty(options.PushgatewayUrl)
            && (!Uri.TryCreate(options.PushgatewayUrl, UriKind.Absolute, out var pushgateway) || pushgateway.Scheme is not ("http" or "https")))
        {
            errors.Add($"CHECKPOINT_PUSHGATEWAY_URL: '{options.PushgatewayUrl}' must be an absolute http:// or https:// URL.");
        }

        RequirePathSegment(errors, "CHECKPOINT_JOB_NAME", options.JobName);
        RequirePathSegment(errors, "POD_NAMESPACE", options.PodNamespace);
        if (Directory.Exists(options.StorageDir) && IsPathSegment(options.JobName) && IsPathSegment(options.PodNamespace))
        {
            RequireJobDirectoryPossible(errors, options);
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void RequireWritableDirectory(List<string> errors, string setting, string path, string what = "")
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            errors.Add($"{setting}: is not set; it must name an existing writable directory.");
            return;
        }

        if (!Directory.Exists(path))
        {
            errors.Add($"{setting}: {what}'{path}' does not exist or is not a directory.");
            return;
        }

        // Permission bits do not tell the whole truth (read-only mounts, root squash on NFS): try it.
        var probe = Path.Combine(path, $".checkpoint-write-probe-{Environment.ProcessId}");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose))
            {
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            errors.Add($"{setting}: {what}'{path}' is not writable: {StorageErrors.Reason(e)}.");
        }
    }

    private static void RequirePathSegment(List<string> errors, string setting, string value)
    {
        if (!IsPathSegment(value))
        {
            errors.Add($"{setting}: '{value}' must be a single directory name (no '/', not '.' or '..').");
        }
    }

    /// <summary>A single directory name: what the namespace and job name must be, here and in the operator commands.</summary>
    internal static bool IsPathSegment(string value) =>
        !string.IsNullOrWhiteSpace(value) && value is not ("." or "..") && !value.Contains('/') && !value.Contains('\0');

    /// <summary>
    /// The job's directory is created at start when missing. Anything else under its name, or under
    /// the namespace's (a file someone left, a FIFO), would fail every flush; it is named now instead.
    /// </summary>
    private static void RequireJobDirectoryPossible(List<string> errors, SidecarOptions options)
    {
        var jobDirectory = new CheckpointLayout(options.StorageDir, options.PodNamespace, options.JobName).JobDirectory;
        foreach (var path in (string[])[Path.GetDirectoryName(jobDirectory)!, jobDirectory])
        {
            // Follows a symlink: one to a directory is the operator's to make.
            if (Directory.Exists(path))
            {
                continue;
            }

            try
            {
                // Pods of a job start together: another one may have created the directory since the first
                // look, which is no error. Only something that is still not a directory is.
                if (NativeFile.GetKind(path) != FileKind.Missing && !Directory.Exists(path))
                {
                    errors.Add($"CHECKPOINT_STORAGE_DIR: the job's directory '{jobDirectory}' (<storage>/POD_NAMESPACE/CHECKPOINT_JOB_NAME) cannot be created: '{path}' exists and is not a directory.");
                }
            }
            catch (IOException e)
            {
                errors.Add($"CHECKPOINT_STORAGE_DIR: the job's directory '{jobDirectory}' cannot be checked: {e.Message}");
            }

            return;
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex PodNamePattern();
}
