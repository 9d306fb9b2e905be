using System.Globalization;
using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Kubernetes;

/// <summary>
/// Keeps what preempting this pod would cost on the pod itself, where a scheduler policy or an
/// operator reads it without scraping anything: the predicted preemption flush and its ratio to G,
/// and the newest committed checkpoint's step and time (see <see cref="PodCost"/>). When the
/// prediction does not fit G, a Warning Event GracePeriodTooShort names the grace period that would.
/// </summary>
/// <remarks>
/// Told of commits as a flush reporter, and otherwise looks again once an interval (G read from the
/// pod spec changes the prediction without a flush). Writes are rate limited and coalesced
/// (<see cref="PodCostSchedule"/>). The API can refuse (no RBAC), fail or hang: flushes never wait
/// for it, each kind of failure is logged once and counted, and the write is retried an interval later.
/// </remarks>
internal sealed class PodCostAnnotator(
    KubernetesConnection connection,
    FlushPlanner planner,
    CheckpointStore store,
    CheckpointMetrics metrics,
    IOptions<SidecarOptions> options,
    TimeProvider time,
    ILogger<PodCostAnnotator> logger) : BackgroundService, IFlushReporter
{
    public const string AnnotateOperation = "annotate";
    public const string GraceEventOperation = "grace_event";
    public const string GraceEventReason = "GracePeriodTooShort";

    private readonly TimeSpan _interval = TimeSpan.FromSeconds(options.Value.PodAnnotationIntervalSeconds);
    private readonly object _gate = new();
    private readonly HashSet<(string Operation, string Kind)> _failuresLogged = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long? _newestStep;
    private DateTimeOffset? _newestTime;
    private TimeSpan? _loggedRecommendation;

    public Task PreemptionStartedAsync(PreemptionStarted started, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task FlushEndedAsync(FlushReport report, CancellationToken cancellationToken)
    {
        if (report.Outcome.Status == CheckpointStatus.Committed)
        {
            NewestCommit(report.Outcome.Step ?? 0, report.EndedAt);
        }

        return Task.CompletedTask;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // A storage that hangs holds this loop only, never the host's start.
        await Task.Run(FindNewestOnStorage, stoppingToken).ConfigureAwait(false);
        if (connection.Client is not { } client || _interval <= TimeSpan.Zero)
        {
            return;
        }

        var schedule = new PodCostSchedule(_interval, time);
        var advice = new GracePeriodAdvice(_interval, time);
        while (!stoppingToken.IsCancellationRequested)
        {
            // Taken before reading the state, so a commit reported meanwhile wakes the wait below.
            var changed = Volatile.Read(ref _changed).Task;
            var cost = Current();

            // The Event first: once a patch shows a state, the advice for that state has been decided.
            var adviceWait = advice.Due(cost, planner.SafetyMargin);
            if (adviceWait == TimeSpan.Zero)
            {
                advice.Attempted();
                if (await AdviseAsync(client, cost, stoppingToken).ConfigureAwait(false))
                {
                    advice.Advised(cost.Prediction!.RecommendedGracePeriod);
                }
            }

            var patchWait = schedule.Due(cost);
            if (patchWait == TimeSpan.Zero)
            {
                schedule.Attempted();
                if (await PatchAsync(client, cost, stoppingToken).ConfigureAwait(false))
                {
                    schedule.Succeeded(cost);
                }

                continue;
            }

            // Nothing pending: look again after an interval all the same, for a changed G.
            var wait = Shortest(Shortest(patchWait, adviceWait == TimeSpan.Zero ? null : adviceWait), _interval);
            await WaitAsync(changed, wait, stoppingToken).ConfigureAwait(false);
        }
    }

    private PodCost Current()
    {
        lock (_gate)
        {
            return new PodCost(planner.GracePeriod, planner.Predict(), _newestStep, _newestTime);
        }
    }

    /// <summary>A commit is news only if newer than what is known (the storage search at start may end after a commit).</summary>
    private void NewestCommit(long step, DateTimeOffset committedAt)
    {
        lock (_gate)
        {
            if (_newestTime is { } known && committedAt <= known)
            {
                return;
            }

            _newestStep = step;
            _newestTime = committedAt;
            metrics.SetNewestCommit(step, committedAt);
        }

        Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    /// <summary>
    /// What a restart would resume from before this pod commits anything: the previous pod's (or, job-wide,
    /// the job's) newest checkpoint. Manifests only, no hashing: this is for display, not for resuming.
    /// </summary>
    private void FindNewestOnStorage()
    {
        try
        {
            if (store.FindLatestValid(verifyHashes: false, options.Value.CopyBufferBytes, onInvalid: null, CancellationToken.None) is { } newest)
            {
                NewestCommit(newest.Step, newest.Created);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var error = StorageErrors.Describe(e);
            KubernetesLog.NewestCommitUnknown(logger, error);
        }
    }

    private async Task<bool> PatchAsync(PodApiClient client, PodCost cost, CancellationToken stoppingToken)
    {
        try
        {
            await client.PatchPodAnnotationsAsync(connection.Namespace, connection.PodName, cost.ToAnnotations(), stoppingToken).ConfigureAwait(false);
            Recovered(AnnotateOperation);
            return true;
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested && e is not OutOfMemoryException)
        {
            Failed(AnnotateOperation, e);
            return false;
        }
    }

    private async Task<bool> AdviseAsync(PodApiClient client, PodCost cost, CancellationToken stoppingToken)
    {
        var prediction = cost.Prediction!;
        var predicted = prediction.Predicted.TotalSeconds;
        var grace = cost.GracePeriod.TotalSeconds;
        var margin = planner.SafetyMargin.TotalSeconds;
        var recommended = prediction.RecommendedGracePeriod.TotalSeconds;
        if (_loggedRecommendation != prediction.RecommendedGracePeriod)
        {
            // Once per recommendation, not once per retry of the Event.
            _loggedRecommendation = prediction.RecommendedGracePeriod;
            KubernetesLog.GraceTooShort(logger, predicted, grace, margin, recommended);
        }

        var message = string.Create(CultureInfo.InvariantCulture,
            $"A preemption flush is predicted to take {predicted:F1} s, more than the {grace:F0} s grace period leaves after the {margin:F1} s safety margin (ratio {prediction.Ratio:F2}): a preemption now would lose the work since the last checkpoint. Set terminationGracePeriodSeconds to at least {recommended:F0} s.");
        try
        {
            var kubernetesEvent = PodEvents.ForPod(connection, time.GetUtcNow(), GraceEventReason, "Warning", message);
            await client.CreateEventAsync(connection.Namespace, kubernetesEvent, stoppingToken).ConfigureAwait(false);
            Recovered(GraceEventOperation);
            return true;
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested && e is not OutOfMemoryException)
        {
            Failed(GraceEventOperation, e);
            return false;
        }
    }

    private void Failed(string operation, Exception e)
    {
        var kind = FailureKind(e);
        metrics.RecordKubernetesApiFailure(operation, kind);
        if (_failuresLogged.Add((operation, kind)))
        {
            var error = e.Message;
            var retrySeconds = _interval.TotalSeconds;
            KubernetesLog.PodWriteFailed(logger, operation, connection.PodName, kind, error, retrySeconds);
        }
    }

    /// <summary>A later outage is news again.</summary>
    private void Recovered(string operation)
    {
        if (_failuresLogged.RemoveWhere(f => f.Operation == operation) > 0)
        {
            KubernetesLog.PodWriteRecovered(logger, operation, connection.PodName);
        }
    }

    private static string FailureKind(Exception e) => e switch
    {
        HttpRequestException { StatusCode: { } status } => "http_" + ((int)status).ToString(CultureInfo.InvariantCulture),
        TaskCanceledException or TimeoutException => "timeout",
        HttpRequestException or IOException => "unreachable",
        _ => "other",
    };

    private static TimeSpan? Shortest(TimeSpan? a, TimeSpan? b) => a is null ? b : b is null ? a : a < b ? a : b;

    private async Task WaitAsync(Task changed, TimeSpan? wait, CancellationToken stoppingToken)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var delay = Task.Delay(wait ?? _interval, time, cancel.Token);
        await Task.WhenAny(changed, delay).ConfigureAwait(false);
        await cancel.CancelAsync().ConfigureAwait(false);
    }
}
