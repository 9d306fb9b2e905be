using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Kubernetes;

/// <summary>
/// Reads the sidecar's own pod and keeps watching it. G (terminationGracePeriodSeconds) comes from
/// the spec: it is not in the downward API, and a configured value can drift from the spec. A
/// deletionTimestamp or a DisruptionTarget condition starts the preemption flush, possibly before
/// any signal arrives, with the deadline the kubelet will enforce and the cause the scheduler gave.
/// When the API cannot be reached the sidecar still works from signals and hooks; the log says so
/// once, and the watch keeps retrying with backoff.
/// </summary>
internal sealed class PodWatcher(
    KubernetesConnection connection,
    FlushCoordinator coordinator,
    FlushPlanner planner,
    CheckpointMetrics metrics,
    TimeProvider time,
    ILogger<PodWatcher> logger) : BackgroundService
{
    private static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan LongestRetry = TimeSpan.FromSeconds(30);

    private DateTimeOffset? _reportedDeletion;
    private string? _reportedDisruption;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        PublishBudget();
        if (connection.Client is not { } client)
        {
            return;
        }

        var retry = FirstRetry;
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var pod = await client.GetPodAsync(connection.Namespace, connection.PodName, stoppingToken).ConfigureAwait(false);
                if (failures > 0 || connection.PodUid is null)
                {
                    KubernetesLog.Watching(logger, connection.Namespace, connection.PodName);
                }

                failures = 0;
                retry = FirstRetry;
                Apply(pod);
                var resourceVersion = pod.Metadata?.ResourceVersion;
                await foreach (var change in client.WatchPodAsync(connection.Namespace, connection.PodName, resourceVersion, stoppingToken)
                                   .ConfigureAwait(false))
                {
                    if (change.Type == "ERROR")
                    {
                        // Usually 410 Gone: the resource version is too old. Read the pod again.
                        break;
                    }

                    if (change.Object is { } changed && change.Type is "ADDED" or "MODIFIED")
                    {
                        Apply(changed);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is HttpRequestException or IOException or System.Text.Json.JsonException or TaskCanceledException)
            {
                if (failures++ == 0)
                {
                    KubernetesLog.ApiUnreachable(logger, connection.Namespace, connection.PodName, e.Message, planner.GracePeriod.TotalSeconds);
                }

                await Task.Delay(retry, time, stoppingToken).ConfigureAwait(false);
                retry = TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, LongestRetry.Ticks));
            }
        }
    }

    private void Apply(PodView pod)
    {
        connection.PodUid ??= pod.Metadata?.Uid;
        if (pod.Spec?.TerminationGracePeriodSeconds is { } seconds && TimeSpan.FromSeconds(seconds) != planner.GracePeriod)
        {
            planner.UseGracePeriod(TimeSpan.FromSeconds(seconds));
            KubernetesLog.GraceFromPod(logger, connection.Namespace, connection.PodName, seconds);
            PublishBudget();
        }

        var deletion = pod.Metadata?.DeletionTimestamp;
        var disruption = pod.Status?.Conditions?.FirstOrDefault(c => c.Type == "DisruptionTarget" && c.Status == "True");
        var disruptionReason = disruption is null ? null : disruption.Reason ?? "DisruptionTarget";
        if ((deletion is null && disruptionReason is null) || (deletion == _reportedDeletion && disruptionReason == _reportedDisruption))
        {
            return;
        }

        _reportedDeletion = deletion;
        _reportedDisruption = disruptionReason;
        KubernetesLog.Terminating(logger, connection.PodName, deletion, disruptionReason ?? "none", disruption?.Message ?? "");
        coordinator.Terminate(TerminationSource.PodWatch, deletion, disruptionReason);
    }

    /// <summary>Too small a budget is reported when G becomes known, not discovered at preemption.</summary>
    private void PublishBudget()
    {
        metrics.SetGracePeriod(planner.GracePeriod);
        metrics.SetPrediction(planner.Predict());
        if (!planner.HasUsableBudget)
        {
            KubernetesLog.NoBudget(logger, planner.GracePeriod.TotalSeconds, planner.SafetyMargin.TotalSeconds);
        }
    }
}
