namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// Told when a preemption flush starts and when any flush ends, so the news outlives the pod:
/// a Kubernetes Event, a record on the shared storage, a push to a Pushgateway. A reporter decides
/// itself which flushes matter to it and never throws into the flush.
/// </summary>
public interface IFlushReporter
{
    Task PreemptionStartedAsync(PreemptionStarted started, CancellationToken cancellationToken);

    Task FlushEndedAsync(FlushReport report, CancellationToken cancellationToken);
}

/// <param name="Cause">The DisruptionTarget reason (PreemptionByScheduler, ...) when the pod said why, else what triggered the flush.</param>
public sealed record PreemptionStarted(
    string CheckpointId, string Cause, DateTimeOffset TriggeredAt, DateTimeOffset Deadline, TimeSpan GracePeriod, int Trainers);

/// <param name="Cause">For preemptions, as in <see cref="PreemptionStarted"/>; null for checkpoints the trainer asked for.</param>
public sealed record FlushReport(
    CheckpointOutcome Outcome, CheckpointReason Reason, string? Cause, TimeSpan GracePeriod, DateTimeOffset TriggeredAt, DateTimeOffset EndedAt,
    bool Drill = false)
{
    public bool DeadlineMissed => Outcome.FailureCause == FlushFailureCause.DeadlineExceeded;
}
