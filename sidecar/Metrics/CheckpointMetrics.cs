using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Interval;
using Prometheus;

namespace Checkpoint.Sidecar.Metrics;

/// <summary>
/// Every metric the sidecar exports, on an injected registry so tests read a private one.
/// Names follow Prometheus conventions (base units, <c>_total</c> counters) and are listed in the
/// README, the alert rules and the dashboard; renaming one is a breaking change.
/// </summary>
public sealed class CheckpointMetrics
{
    public static readonly string[] Phases = ["notify", "dump", "copy", "verify", "commit", "total"];

    private readonly Histogram _phaseDuration;
    private readonly Gauge _lastPhase;
    private readonly Counter _flushedBytes;
    private readonly Gauge _throughput;
    private readonly Gauge _gracePeriod;
    private readonly Gauge _budgetUsedRatio;
    private readonly Counter _deadlineMisses;
    private readonly Counter _failures;
    private readonly Counter _verifyFailures;
    private readonly Counter _verifiedBytes;
    private readonly Counter _flushes;
    private readonly Gauge _lastCommittedTimestamp;
    private readonly Gauge _lastCommittedStep;
    private readonly Gauge _trainersAttached;
    private readonly Counter _attachments;
    private readonly Gauge _predictedFlush;
    private readonly Gauge _predictedRatio;
    private readonly Gauge _recommendedGrace;
    private readonly Counter _preemptions;
    private readonly Gauge _lastDeadlineMissed;
    private readonly Gauge _lastFlushEnded;
    private readonly Histogram _commitWait;
    private readonly Gauge _missingRanks;

    // What preempting the pod would cost (issue 12); also published as pod annotations.
    private readonly Gauge _newestCommitTimestamp;
    private readonly Gauge _newestCommitStep;
    private readonly Counter _kubernetesApiFailures;
    private readonly Counter _drills;

    // How often to checkpoint (issue 12): the Young/Daly interval and its inputs, absent until known.
    private readonly Gauge _recommendedInterval;
    private readonly Gauge _periodicCost;
    private readonly Gauge _observedMtbf;
    private readonly Gauge _observedPeriodicInterval;
    private readonly Gauge _observedPreemptions;

    public CheckpointMetrics(CollectorRegistry registry)
    {
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        _phaseDuration = factory.CreateHistogram(
            "checkpoint_flush_phase_duration_seconds",
            "Duration of each phase of a checkpoint flush (notify, dump, copy, verify, commit, total).",
            new HistogramConfiguration
            {
                LabelNames = ["phase", "reason"],
                Buckets = Histogram.ExponentialBuckets(0.005, 2, 17),
            });
        _lastPhase = factory.CreateGauge(
            "checkpoint_last_flush_phase_seconds",
            "Duration of each phase of the most recent committed flush.",
            new GaugeConfiguration { LabelNames = ["phase", "reason"] });
        _flushedBytes = factory.CreateCounter(
            "checkpoint_flushed_bytes_total", "Bytes of committed checkpoints written to storage.", "reason");
        _throughput = factory.CreateGauge(
            "checkpoint_flush_throughput_bytes_per_second", "Copy throughput of the most recent committed flush.");
        _gracePeriod = factory.CreateGauge(
            "checkpoint_grace_period_seconds", "The grace period G between SIGTERM and SIGKILL that flushes are planned against.");
        _budgetUsedRatio = factory.CreateGauge(
            "checkpoint_last_flush_budget_used_ratio", "Total duration of the most recent committed flush divided by the grace period.");
        _deadlineMisses = factory.CreateCounter(
            "checkpoint_deadline_misses_total", "Preemption flushes that could not commit before the deadline.");
        _failures = factory.CreateCounter(
            "checkpoint_flush_failures_total", "Flushes that failed, by cause.", "cause");
        _verifyFailures = factory.CreateCounter(
            "checkpoint_verify_failures_total", "Checkpoints whose bytes did not match their hashes, when flushed or when resumed from.", "stage");
        _verifiedBytes = factory.CreateCounter(
            "checkpoint_verified_bytes_total",
            "Bytes of committed checkpoints by how they were verified before the commit: read back from storage (read-back), "
            + "or on the hash taken while writing and the fsync (write-hash: CHECKPOINT_VERIFY=write-hash, or a deadline too close for a read-back).",
            "mode");
        _flushes = factory.CreateCounter(
            "checkpoint_flushes_total", "Flushes that ended, by reason and outcome (committed, failed, superseded).", "reason", "outcome");
        _lastCommittedTimestamp = factory.CreateGauge(
            "checkpoint_last_committed_timestamp_seconds", "Unix time of the most recent commit.");
        _lastCommittedStep = factory.CreateGauge(
            "checkpoint_last_committed_step", "Training step held by the most recent committed checkpoint.");
        _trainersAttached = factory.CreateGauge(
            "checkpoint_trainers_attached", "Trainer processes attached to this sidecar.");
        _attachments = factory.CreateCounter(
            "checkpoint_trainer_attachments_total",
            "Trainer attachments since the sidecar started (a reattachment counts again); 0 for long: no trainer ever reached the sidecar.");

        _predictedFlush = factory.CreateGauge(
            "checkpoint_predicted_flush_seconds",
            "Predicted duration of a preemption flush of the last checkpoint's size at the measured throughput.");
        _predictedRatio = factory.CreateGauge(
            "checkpoint_predicted_flush_budget_ratio",
            "Predicted flush duration divided by the grace period; +Inf when the grace period leaves no time after the safety margin.");
        _recommendedGrace = factory.CreateGauge(
            "checkpoint_recommended_grace_period_seconds",
            "A terminationGracePeriodSeconds in which the predicted flush uses at most 80 % of the budget.");
        _drills = factory.CreateCounter(
            "checkpoint_preemption_drills_total",
            "Preemption drills (checkpoint-sidecar drill) by result: fits, would_not_fit, failed, superseded. Not counted as preemptions.",
            "result");
        _preemptions = factory.CreateCounter(
            "checkpoint_preemptions_total",
            "Pod terminations seen, by cause: the DisruptionTarget reason, or the trigger (Signal, PreStopHook, PodWatch, TrainerNotice).",
            "cause");
        _lastDeadlineMissed = factory.CreateGauge(
            "checkpoint_last_flush_deadline_missed",
            "1 when the most recent flush (of this pod, or of the previous pod of the job, from its record) missed its deadline.");

        _lastFlushEnded = factory.CreateGauge(
            "checkpoint_last_flush_timestamp_seconds",
            "Unix time the most recent flush (of this pod, or of the previous pod of the job, from its record) ended, committed or not; "
            + "alerts on the last flush read its age, as a pushed or re-exported series never goes away.");

        _commitWait = factory.CreateHistogram(
            "checkpoint_job_commit_wait_seconds",
            "From this pod's shard being sealed to the job-wide commit: the time spent waiting for the other pods' shards.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.005, 2, 17) });
        _missingRanks = factory.CreateGauge(
            "checkpoint_job_missing_ranks",
            "Ranks of the world that had no sealed shard when this pod's most recent job-wide checkpoint failed; 0 after a commit.");

        // The prometheus-net/Prometheus convention: a constant 1 whose labels say what runs, so a
        // dashboard can tell which pods still run an old build.
        factory.CreateGauge(
                "checkpoint_build_info",
                "Always 1; the labels name the sidecar's version and the commit it was built from.",
                "version", "commit")
            .WithLabels(Hosting.BuildInfo.Version, Hosting.BuildInfo.Commit)
            .Set(1);

        // Absent until a committed checkpoint is known, so that time() minus it is never "since 1970".
        _newestCommitTimestamp = factory.CreateGauge(
            "checkpoint_newest_commit_timestamp_seconds",
            "Unix time of the newest committed checkpoint a restart would resume from: this pod's, or one found on storage at start.",
            new GaugeConfiguration { SuppressInitialValue = true });
        _newestCommitStep = factory.CreateGauge(
            "checkpoint_newest_commit_step",
            "Training step of the newest committed checkpoint a restart would resume from.",
            new GaugeConfiguration { SuppressInitialValue = true });
        _kubernetesApiFailures = factory.CreateCounter(
            "checkpoint_kubernetes_api_failures_total",
            "Failed writes to the pod's API object (annotate, grace_event), by kind (http_<status>, timeout, unreachable); flushes never wait for them.",
            "operation", "kind");

        var unknownUntilSet = new GaugeConfiguration { SuppressInitialValue = true };
        _recommendedInterval = factory.CreateGauge(
            "checkpoint_recommended_interval_seconds",
            "The Young/Daly checkpoint interval sqrt(2 * periodic cost * MTBF) of the job; absent until both are known.",
            unknownUntilSet);
        _periodicCost = factory.CreateGauge(
            "checkpoint_periodic_cost_seconds",
            "What a periodic checkpoint stalls training (notify + dump of the slowest pod), median of the job's recent ones.",
            unknownUntilSet);
        _observedMtbf = factory.CreateGauge(
            "checkpoint_observed_mtbf_seconds",
            "Mean time between preemptions of the job, from its flush records; absent while too few preemptions were seen.",
            unknownUntilSet);
        _observedPeriodicInterval = factory.CreateGauge(
            "checkpoint_observed_periodic_interval_seconds",
            "Median time between the job's periodic checkpoints: the interval the trainer actually uses.",
            unknownUntilSet);
        _observedPreemptions = factory.CreateGauge(
            "checkpoint_observed_preemptions",
            "Preemptions of the job in its flush records (the pods of one preemption count once), which the MTBF is computed from.");

        // Series that alerts compare against exist from the start, at zero, rather than appearing
        // only after the first failure.
        foreach (var cause in Enum.GetValues<FlushFailureCause>())
        {
            _failures.WithLabels(cause.ToLabel());
        }

        _verifyFailures.WithLabels("flush");
        _verifyFailures.WithLabels("resume");
        _verifiedBytes.WithLabels("read-back");
        _verifiedBytes.WithLabels("write-hash");
    }

    public void SetGracePeriod(TimeSpan gracePeriod) => _gracePeriod.Set(gracePeriod.TotalSeconds);

    public void SetTrainersAttached(int count) => _trainersAttached.Set(count);

    public void RecordTrainerAttached() => _attachments.Inc();

    /// <param name="reasonLabel">In place of the timings' reason: <c>drill</c> for a preemption drill.</param>
    public void RecordCommitted(FlushTimings timings, long step, DateTimeOffset committedAt, string? reasonLabel = null)
    {
        var reason = reasonLabel ?? timings.Reason.ToLabel();
        foreach (var (phase, duration) in PhaseDurations(timings))
        {
            _phaseDuration.WithLabels(phase, reason).Observe(duration.TotalSeconds);
            _lastPhase.WithLabels(phase, reason).Set(duration.TotalSeconds);
        }

        _flushedBytes.WithLabels(reason).Inc(timings.Bytes);
        if (timings.ReadBackBytes is { } readBack)
        {
            _verifiedBytes.WithLabels("read-back").Inc(readBack);
            _verifiedBytes.WithLabels("write-hash").Inc(Math.Max(0, timings.Bytes - readBack));
        }

        _throughput.Set(timings.ThroughputBytesPerSecond);
        _budgetUsedRatio.Set(timings.BudgetUsedRatio);
        _flushes.WithLabels(reason, "committed").Inc();
        _lastCommittedTimestamp.Set(committedAt.ToUnixTimeMilliseconds() / 1000.0);
        _lastCommittedStep.Set(step);
        _commitWait.Observe(timings.CommitWait.TotalSeconds);
        _missingRanks.Set(0);
    }

    /// <summary>A job-wide checkpoint failed with ranks of other pods missing.</summary>
    public void RecordMissingRanks(int missing) => _missingRanks.Set(missing);

    public void RecordFailed(CheckpointReason reason, FlushFailureCause cause)
    {
        _failures.WithLabels(cause.ToLabel()).Inc();
        _flushes.WithLabels(reason.ToLabel(), "failed").Inc();
        if (cause == FlushFailureCause.DeadlineExceeded)
        {
            _deadlineMisses.Inc();
        }

        if (cause == FlushFailureCause.VerificationFailed)
        {
            _verifyFailures.WithLabels("flush").Inc();
        }
    }

    public void RecordSuperseded(CheckpointReason reason) => _flushes.WithLabels(reason.ToLabel(), "superseded").Inc();

    public void SetPrediction(FlushPrediction? prediction)
    {
        if (prediction is null)
        {
            return;
        }

        _predictedFlush.Set(prediction.Predicted.TotalSeconds);
        _predictedRatio.Set(prediction.Ratio);
        _recommendedGrace.Set(prediction.RecommendedGracePeriod.TotalSeconds);
    }

    public void RecordPreemption(string cause) => _preemptions.WithLabels(cause).Inc();

    public void RecordDrill(string result) => _drills.WithLabels(result).Inc();

    public void RecordLastFlushEnded(bool deadlineMissed, DateTimeOffset endedAt)
    {
        _lastDeadlineMissed.Set(deadlineMissed ? 1 : 0);
        _lastFlushEnded.Set(endedAt.ToUnixTimeMilliseconds() / 1000.0);
    }

    /// <summary>
    /// A new sidecar of the same job shows how the flush that ended the previous pod went, from the
    /// record that pod left on the shared storage.
    /// </summary>
    public void RestoreLastFlush(FlushTimings timings, bool deadlineMissed, DateTimeOffset endedAt)
    {
        var reason = timings.Reason.ToLabel();
        foreach (var (phase, duration) in PhaseDurations(timings))
        {
            _lastPhase.WithLabels(phase, reason).Set(duration.TotalSeconds);
        }

        _throughput.Set(timings.ThroughputBytesPerSecond);
        _budgetUsedRatio.Set(timings.BudgetUsedRatio);
        RecordLastFlushEnded(deadlineMissed, endedAt);
    }

    public void SetNewestCommit(long step, DateTimeOffset committedAt)
    {
        _newestCommitStep.Set(step);
        _newestCommitTimestamp.Set(committedAt.ToUnixTimeMilliseconds() / 1000.0);
    }

    public void SetIntervalRecommendation(IntervalRecommendation recommendation)
    {
        SetOrUnpublish(_recommendedInterval, recommendation.Recommended);
        SetOrUnpublish(_periodicCost, recommendation.PeriodicCost);
        SetOrUnpublish(_observedMtbf, recommendation.Mtbf);
        SetOrUnpublish(_observedPeriodicInterval, recommendation.ObservedPeriodicInterval);
        _observedPreemptions.Set(recommendation.Preemptions);
    }

    /// <summary>A value no longer known (its records were removed) disappears rather than staying stale.</summary>
    private static void SetOrUnpublish(Gauge gauge, TimeSpan? value)
    {
        if (value is { } v)
        {
            gauge.Set(v.TotalSeconds);
        }
        else
        {
            gauge.Unpublish();
        }
    }

    public void RecordKubernetesApiFailure(string operation, string kind) => _kubernetesApiFailures.WithLabels(operation, kind).Inc();

    public void RecordResumeVerifyFailure() => _verifyFailures.WithLabels("resume").Inc();

    public static IEnumerable<(string Phase, TimeSpan Duration)> PhaseDurations(FlushTimings t) =>
    [
        ("notify", t.Notify),
        ("dump", t.Dump),
        ("copy", t.Copy),
        ("verify", t.Verify),
        ("commit", t.Commit),
        ("total", t.Total),
    ];
}
