using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Kubernetes;

internal static partial class KubernetesLog
{
    [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "Grace period {Seconds} s read from pod {Namespace}/{Pod}")]
    public static partial void GraceFromPod(ILogger logger, string @namespace, string pod, long seconds);

    [LoggerMessage(EventId = 301, Level = LogLevel.Information, Message = "No Kubernetes API ({Why}): the grace period comes from CHECKPOINT_GRACE_PERIOD_SECONDS; signals and hooks trigger flushes")]
    public static partial void NoApi(ILogger logger, string why);

    [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "Kubernetes API unreachable for pod {Namespace}/{Pod} ({Error}); using a grace period of {Seconds} s; signals and hooks still trigger flushes; retrying in the background")]
    public static partial void ApiUnreachable(ILogger logger, string @namespace, string pod, string error, double seconds);

    [LoggerMessage(EventId = 303, Level = LogLevel.Information, Message = "Watching pod {Namespace}/{Pod}")]
    public static partial void Watching(ILogger logger, string @namespace, string pod);

    [LoggerMessage(EventId = 304, Level = LogLevel.Warning, Message = "Pod {Pod} is terminating: deletionTimestamp {Deletion:O}, DisruptionTarget {Reason} {Message}")]
    public static partial void Terminating(ILogger logger, string pod, DateTimeOffset? deletion, string reason, string message);

    [LoggerMessage(EventId = 305, Level = LogLevel.Error, Message = "The grace period of {GraceSeconds} s leaves no time for a flush after the {MarginSeconds} s safety margin: a preemption will lose the work since the last checkpoint. Raise terminationGracePeriodSeconds.")]
    public static partial void NoBudget(ILogger logger, double graceSeconds, double marginSeconds);

    [LoggerMessage(EventId = 306, Level = LogLevel.Warning, Message = "Could not record event {Reason} on pod {Pod}: {Error}")]
    public static partial void EventFailed(ILogger logger, string reason, string pod, string error);

    [LoggerMessage(EventId = 307, Level = LogLevel.Warning, Message = "Could not {Operation} pod {Pod} ({Kind}): {Error}; flushes are not affected; retrying every {RetrySeconds} s, and not logging this kind of failure again until it works")]
    public static partial void PodWriteFailed(ILogger logger, string operation, string pod, string kind, string error, double retrySeconds);

    [LoggerMessage(EventId = 308, Level = LogLevel.Information, Message = "{Operation} pod {Pod} works again")]
    public static partial void PodWriteRecovered(ILogger logger, string operation, string pod);

    [LoggerMessage(EventId = 309, Level = LogLevel.Warning, Message = "GracePeriodTooShort: a preemption flush is predicted to take {PredictedSeconds} s, more than the {GraceSeconds} s grace period leaves after the {MarginSeconds} s safety margin; recommended terminationGracePeriodSeconds: {RecommendedSeconds}")]
    public static partial void GraceTooShort(ILogger logger, double predictedSeconds, double graceSeconds, double marginSeconds, double recommendedSeconds);

    [LoggerMessage(EventId = 310, Level = LogLevel.Warning, Message = "The newest committed checkpoint on storage could not be read ({Error}); the pod's cost annotations show none until this pod commits one")]
    public static partial void NewestCommitUnknown(ILogger logger, string error);
}
