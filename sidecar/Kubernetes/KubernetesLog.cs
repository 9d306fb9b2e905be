using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Kubernetes;

internal static partial class KubernetesLog
{
    [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "Grace period {Seconds} s read from pod {Namespace}/{Pod}")]
    public static partial void GraceFromPod(ILogger logger, string @namespace, string pod, long seconds);

    [LoggerMessage(EventId = 301, Level = LogLevel.Information, Message = "Not running in a cluster (or POD_NAME unset): grace period {Seconds} s from CHECKPOINT_GRACE_PERIOD_SECONDS")]
    public static partial void NotInCluster(ILogger logger, double seconds);

    [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "Kubernetes API unreachable reading pod {Namespace}/{Pod} ({Error}): grace period {Seconds} s from CHECKPOINT_GRACE_PERIOD_SECONDS; signals and hooks still trigger flushes")]
    public static partial void ApiUnreachable(ILogger logger, string @namespace, string pod, string error, double seconds);

    [LoggerMessage(EventId = 303, Level = LogLevel.Information, Message = "CHECKPOINT_KUBERNETES_ENABLED=false: grace period {Seconds} s from CHECKPOINT_GRACE_PERIOD_SECONDS")]
    public static partial void Disabled(ILogger logger, double seconds);
}
