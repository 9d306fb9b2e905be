using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Configuration;

namespace Checkpoint.Sidecar.Configuration;

/// <summary>
/// Every setting of the sidecar. Keys are the environment variable names a pod spec sets, so the
/// same name appears in the pod spec, the optional JSON file, the README and every error message.
/// </summary>
public sealed class SidecarOptions
{
    public const string DefaultSocketPath = "/var/run/checkpoint/sidecar.sock";

    [ConfigurationKeyName("CHECKPOINT_SOCKET_PATH")]
    public string SocketPath { get; set; } = DefaultSocketPath;

    /// <summary>Where trainers dump their files (fast local disk or memory, shared with the trainer).</summary>
    [ConfigurationKeyName("CHECKPOINT_STAGING_DIR")]
    public string StagingDir { get; set; } = "";

    /// <summary>The shared checkpoint volume (an NFS PVC in a cluster).</summary>
    [ConfigurationKeyName("CHECKPOINT_STORAGE_DIR")]
    public string StorageDir { get; set; } = "";

    [ConfigurationKeyName("CHECKPOINT_METRICS_PORT")]
    public int MetricsPort { get; set; } = 9400;

    /// <summary>Used when the pod spec cannot be read through the Kubernetes API.</summary>
    [ConfigurationKeyName("CHECKPOINT_GRACE_PERIOD_SECONDS")]
    public double GracePeriodSeconds { get; set; } = 30;

    /// <summary>Time kept back from the grace period for the process to exit before SIGKILL.</summary>
    [ConfigurationKeyName("CHECKPOINT_SAFETY_MARGIN_SECONDS")]
    public double SafetyMarginSeconds { get; set; } = 2;

    /// <summary>Committed checkpoints retained; older ones are deleted after each commit.</summary>
    [ConfigurationKeyName("CHECKPOINT_KEEP")]
    public int Keep { get; set; } = 3;

    /// <summary>Files copied at once; several files in flight keep NFS busy.</summary>
    [ConfigurationKeyName("CHECKPOINT_COPY_PARALLELISM")]
    public int CopyParallelism { get; set; } = 4;

    [ConfigurationKeyName("CHECKPOINT_COPY_BUFFER_KIB")]
    public int CopyBufferKiB { get; set; } = 4096;

    /// <summary>Re-hash every file of the latest checkpoint before handing it to a resuming trainer.</summary>
    [ConfigurationKeyName("CHECKPOINT_VERIFY_ON_RESUME")]
    public bool VerifyOnResume { get; set; } = true;

    /// <summary>Names the job's directory on storage: &lt;storage&gt;/&lt;namespace&gt;/&lt;job&gt;.</summary>
    [ConfigurationKeyName("CHECKPOINT_JOB_NAME")]
    public string JobName { get; set; } = "default";

    /// <summary>
    /// How long a sealed shard of a checkpoint without a deadline (periodic, manual) waits for the
    /// other pods' shards before it counts as failed. Preemption checkpoints wait until their deadline.
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_JOB_COMMIT_TIMEOUT_SECONDS")]
    public double JobCommitTimeoutSeconds { get; set; } = 600;

    /// <summary>
    /// How a copied file is verified: <c>read-back</c> (default) drops the client cache and re-reads
    /// every byte from the server, except in a flush with a deadline (preemption, drill) where a
    /// file's read-back would not fit before it: that file is committed on its write-side hash and
    /// resume hashes it. <c>read-back-always</c> never skips a read-back, even at the cost of the
    /// deadline; <c>write-hash</c> trusts the hash taken while writing and the fsync (faster, and blind
    /// to corruption between client and server).
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_VERIFY")]
    public string Verify { get; set; } = VerifyReadBack;

    public const string VerifyReadBack = "read-back";

    public const string VerifyReadBackAlways = "read-back-always";

    public const string VerifyWriteHash = "write-hash";

    /// <summary>
    /// Periodic checkpoints upload in the background: their copy threads take this nice (0-19; 0
    /// leaves it). Preemption, drill and manual checkpoints copy at full speed.
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_PERIODIC_NICE")]
    public int PeriodicNice { get; set; } = 19;

    /// <summary>The I/O class of a periodic upload's copy threads: <c>idle</c>, <c>best-effort</c> (its lowest level) or <c>none</c> (unchanged).</summary>
    [ConfigurationKeyName("CHECKPOINT_PERIODIC_IO_CLASS")]
    public string PeriodicIoClass { get; set; } = IoClassIdle;

    public const string IoClassIdle = "idle";

    public const string IoClassBestEffort = "best-effort";

    public const string IoClassNone = "none";

    /// <summary>At most this many MiB/s for a periodic upload (reads, writes and read-back together); 0: no limit.</summary>
    [ConfigurationKeyName("CHECKPOINT_PERIODIC_RATE_MIB_PER_SECOND")]
    public double PeriodicRateMiBPerSecond { get; set; }

    /// <summary>Names this pod's shards on shared storage; every pod of a job must have its own (the downward API's metadata.name).</summary>
    [ConfigurationKeyName("POD_NAME")]
    public string PodName { get; set; } = "";

    [ConfigurationKeyName("POD_NAMESPACE")]
    public string PodNamespace { get; set; } = "default";

    /// <summary>Read the grace period from the pod spec when running in a cluster.</summary>
    [ConfigurationKeyName("CHECKPOINT_KUBERNETES_ENABLED")]
    public bool KubernetesEnabled { get; set; } = true;

    /// <summary>
    /// Exit (0) once the trainers that attached have all gone and their checkpoints are persisted, so
    /// a batch Job with a regular (not native) sidecar completes when training does.
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_EXIT_WHEN_TRAINERS_DONE")]
    public bool ExitWhenTrainersDone { get; set; }

    /// <summary>
    /// How long the sidecar waits for the first trainer to attach before it gives up and exits 3: a trainer
    /// that never attaches (it crashed before connecting, or does not use the SDK) would otherwise keep a
    /// regular sidecar, and with it the pod, running for ever. Unset: 600 s with
    /// <see cref="ExitWhenTrainersDone"/> (the regular sidecar that would hang), else 0. 0 waits for ever.
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS")]
    public double? FirstTrainerTimeoutSeconds { get; set; }

    public const double DefaultFirstTrainerTimeoutSeconds = 600;

    /// <summary>
    /// The largest request a caller on the socket may send: a ReportDump lists its files, and 2 MiB holds
    /// about 10,000 paths of 200 bytes. Requests are held in memory until complete, so this bounds what
    /// each connection can make the sidecar hold.
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_MAX_REPORT_KIB")]
    public int MaxReportKiB { get; set; } = 2048;

    /// <summary>Optional Prometheus Pushgateway to push the final metrics to after a preemption flush.</summary>
    [ConfigurationKeyName("CHECKPOINT_PUSHGATEWAY_URL")]
    public string PushgatewayUrl { get; set; } = "";

    /// <summary>At most one patch of the pod's cost annotations (and one GracePeriodTooShort Event) per this many seconds; 0: neither.</summary>
    [ConfigurationKeyName("CHECKPOINT_POD_ANNOTATION_INTERVAL_SECONDS")]
    public double PodAnnotationIntervalSeconds { get; set; } = 30;

    /// <summary>
    /// Preemptions the job's flush records must show before an MTBF (and so a recommended checkpoint
    /// interval) is exported; fewer say "not enough data" rather than a wild number. Unused with a prior.
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_MTBF_MIN_PREEMPTIONS")]
    public int MtbfMinPreemptions { get; set; } = 2;

    /// <summary>
    /// An MTBF to assume before any preemption is seen (0: none): counted as one more preemption over
    /// that much more time, so an interval is recommended at once and follows the data as they come.
    /// </summary>
    [ConfigurationKeyName("CHECKPOINT_MTBF_PRIOR_SECONDS")]
    public double MtbfPriorSeconds { get; set; }

    public TimeSpan GracePeriod => TimeSpan.FromSeconds(GracePeriodSeconds);

    public TimeSpan SafetyMargin => TimeSpan.FromSeconds(SafetyMarginSeconds);

    public int CopyBufferBytes => CopyBufferKiB * 1024;

    public TimeSpan JobCommitTimeout => TimeSpan.FromSeconds(JobCommitTimeoutSeconds);

    public bool ReadBack => Verify != VerifyWriteHash;

    /// <summary>The pace of a periodic upload, from the three CHECKPOINT_PERIODIC_* settings.</summary>
    public BackgroundPace PeriodicPace => new(
        PeriodicNice,
        PeriodicIoClass switch
        {
            IoClassIdle => IoPriorityClass.Idle,
            IoClassBestEffort => IoPriorityClass.BestEffort,
            _ => IoPriorityClass.None,
        },
        (long)(PeriodicRateMiBPerSecond * 1024 * 1024));

    /// <summary>Zero: wait for the first trainer for ever.</summary>
    public TimeSpan FirstTrainerTimeout => TimeSpan.FromSeconds(
        FirstTrainerTimeoutSeconds ?? (ExitWhenTrainersDone ? DefaultFirstTrainerTimeoutSeconds : 0));

    /// <summary>The pod's name, or the host's outside a cluster (a container's host name is its pod's name).</summary>
    public string PodNameOrHost => PodName.Length > 0 ? PodName : Environment.MachineName;

    public int MaxReportBytes => MaxReportKiB * 1024;
}
