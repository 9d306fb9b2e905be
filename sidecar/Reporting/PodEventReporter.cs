using System.Globalization;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Kubernetes;
using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Reporting;

/// <summary>
/// Kubernetes Events on the sidecar's pod: a preemption flush started, committed (with its phases
/// against the budget) or failed (with the cause). Periodic checkpoints report only failures, so a
/// healthy job does not flood the event stream.
/// </summary>
internal sealed class PodEventReporter(KubernetesConnection connection, TimeProvider time, ILogger<PodEventReporter> logger) : IFlushReporter
{
    public Task PreemptionStartedAsync(PreemptionStarted started, CancellationToken cancellationToken) =>
        PostAsync("CheckpointFlushStarted", "Warning", string.Create(CultureInfo.InvariantCulture,
            $"Preemption flush {started.CheckpointId} started ({started.Cause}): {(started.Deadline - started.TriggeredAt).TotalSeconds:F1} s to the deadline of a {started.GracePeriod.TotalSeconds:F0} s grace period; dump requested from {started.Trainers} trainer(s)"),
            cancellationToken);

    public Task FlushEndedAsync(FlushReport report, CancellationToken cancellationToken)
    {
        var outcome = report.Outcome;
        if (report.Drill)
        {
            // One Event per drill, of its own reason: nothing in it may read as a preemption of the pod.
            var budget = (report.TriggeredAt + report.GracePeriod - report.EndedAt).TotalSeconds;
            var message = outcome.Status == CheckpointStatus.Committed
                ? string.Create(CultureInfo.InvariantCulture,
                    $"Preemption drill {outcome.CheckpointId} (step {outcome.Step}) committed in {outcome.Timings!.Total.TotalSeconds:F2} s of {report.GracePeriod.TotalSeconds:F0} s grace: a preemption now would fit ({budget:F2} s to spare before SIGKILL); training continues")
                : string.Create(CultureInfo.InvariantCulture,
                    $"Preemption drill {outcome.CheckpointId} failed ({outcome.FailureCause?.ToLabel()}): {outcome.Error}; a preemption now would not fit in {report.GracePeriod.TotalSeconds:F0} s grace; training continues");
            return PostAsync("PreemptionDrill", outcome.Status == CheckpointStatus.Committed ? "Normal" : "Warning", message, cancellationToken);
        }

        if (outcome.Status == CheckpointStatus.Committed && report.Reason == CheckpointReason.Preemption)
        {
            var t = outcome.Timings!;
            return PostAsync("CheckpointCommitted", "Normal", string.Create(CultureInfo.InvariantCulture,
                $"Checkpoint {outcome.CheckpointId} (step {outcome.Step}) committed: notify {t.Notify.TotalSeconds:F2} s, dump {t.Dump.TotalSeconds:F2} s, copy {t.Copy.TotalSeconds:F2} s, verify {t.Verify.TotalSeconds:F2} s, commit {t.Commit.TotalSeconds:F2} s, total {t.Total.TotalSeconds:F2} s of {t.Budget.TotalSeconds:F0} s grace (budget ratio {t.BudgetUsedRatio:F2}); {t.Bytes} bytes"),
                cancellationToken);
        }

        if (outcome.Status == CheckpointStatus.Failed)
        {
            return PostAsync("CheckpointFailed", "Warning", string.Create(CultureInfo.InvariantCulture,
                $"{report.Reason.ToLabel()} checkpoint {outcome.CheckpointId} failed ({outcome.FailureCause?.ToLabel()}): {outcome.Error}; the previous checkpoint stays the latest"),
                cancellationToken);
        }

        return Task.CompletedTask;
    }

    private async Task PostAsync(string reason, string type, string message, CancellationToken cancellationToken)
    {
        if (connection.Client is not { } client)
        {
            return;
        }

        var kubernetesEvent = PodEvents.ForPod(connection, time.GetUtcNow(), reason, type, message);
        try
        {
            await client.CreateEventAsync(connection.Namespace, kubernetesEvent, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
        {
            KubernetesLog.EventFailed(logger, reason, connection.PodName, e.Message);
        }
    }
}
