namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// The arithmetic of the grace period: when a preemption flush must be done by, how long a flush
/// of a given size is expected to take at the throughput measured so far, and whether an upload
/// already under way may finish before the preemption dump is persisted.
/// </summary>
public sealed class FlushPlanner(TimeSpan gracePeriod, TimeSpan safetyMargin)
{
    private readonly object _gate = new();
    private double _copyBytesPerSecond;
    private double _verifyBytesPerSecond;
    private double _backgroundCopyBytesPerSecond;
    private double _backgroundVerifyBytesPerSecond;
    private FlushTimings? _last;
    private TimeSpan _missedAfter;

    public TimeSpan GracePeriod { get; private set; } = gracePeriod;

    public TimeSpan SafetyMargin { get; } = safetyMargin;

    /// <summary>The pod spec, read through the API, overrides the configured value.</summary>
    public void UseGracePeriod(TimeSpan gracePeriod) => GracePeriod = gracePeriod;

    /// <summary>
    /// The kubelet sends SIGKILL at deletionTimestamp when it is known, else G after the trigger;
    /// the margin leaves time for the process to exit cleanly.
    /// </summary>
    public DateTimeOffset PreemptionDeadline(DateTimeOffset triggeredAt, DateTimeOffset? deletionTimestamp = null)
    {
        var kill = deletionTimestamp ?? triggeredAt + GracePeriod;
        var deadline = kill - SafetyMargin;
        return deadline < triggeredAt ? triggeredAt : deadline;
    }

    /// <summary>The grace period leaves time to flush after the safety margin.</summary>
    public bool HasUsableBudget => GracePeriod > SafetyMargin;

    /// <summary>Remembers a committed flush (this pod's, or the previous pod's from its record) for prediction.</summary>
    /// <param name="fullSpeed">False for a copy that ran in the background (a periodic upload): see <see cref="RecordThroughput"/>.</param>
    public void RecordFlush(FlushTimings timings, bool fullSpeed = true)
    {
        RecordThroughput(timings.Bytes, timings.Copy, timings.Verify, timings.ReadBackBytes, fullSpeed);
        lock (_gate)
        {
            _last = timings;
        }
    }

    /// <summary>
    /// A preemption flush (this pod's, or the previous pod's from its record) ran out of time after
    /// <paramref name="ranFor"/>: it has no timings to predict from, but it needed longer than that.
    /// The prediction is at least that from now on, so the recommendation is a grace period it would
    /// have fitted, never the 0 s of "nothing measured".
    /// </summary>
    public void RecordDeadlineMiss(TimeSpan ranFor)
    {
        lock (_gate)
        {
            if (ranFor > _missedAfter)
            {
                _missedAfter = ranFor;
            }
        }
    }

    /// <summary>
    /// How long a preemption flush of the last checkpoint's size would take now, against G: the
    /// early warning that the grace period is too short. Infinite ratio when G leaves no time at all;
    /// null before any flush was measured.
    /// </summary>
    public FlushPrediction? Predict()
    {
        FlushTimings? last;
        TimeSpan missedAfter;
        lock (_gate)
        {
            last = _last;
            missedAfter = _missedAfter;
        }

        if (last is null && missedAfter == TimeSpan.Zero)
        {
            return HasUsableBudget ? null : new FlushPrediction(TimeSpan.Zero, double.PositiveInfinity, RecommendGrace(TimeSpan.Zero));
        }

        var measured = last is null
            ? TimeSpan.Zero
            : last.Notify + last.Dump + (PredictPersistTime(last.Bytes) ?? last.Copy + last.Verify) + last.Commit;
        var predicted = measured > missedAfter ? measured : missedAfter;
        var ratio = GracePeriod > TimeSpan.Zero ? predicted / GracePeriod : double.PositiveInfinity;
        return new FlushPrediction(predicted, ratio, RecommendGrace(predicted));
    }

    /// <summary>Enough that the predicted flush uses at most 80 % of what is left after the margin.</summary>
    private TimeSpan RecommendGrace(TimeSpan predicted) =>
        TimeSpan.FromSeconds(Math.Ceiling(predicted.TotalSeconds / RecommendedBudgetShare + SafetyMargin.TotalSeconds));

    private const double RecommendedBudgetShare = 0.8;

    /// <summary>A thousand years: two of these still add up within a TimeSpan.</summary>
    private const double NeverSeconds = 1000 * 365 * 86400.0;

    /// <summary>Folds a finished flush into the throughput estimate (the newest flush counts most).</summary>
    /// <param name="readBackBytes">
    /// The bytes read back before the commit; null: all of them (flushes measured before it was
    /// recorded). A flush that read back only part, or nothing, says little about read-back
    /// throughput: its short verify phase would make the next deadline look easy.
    /// </param>
    /// <param name="fullSpeed">
    /// False for a copy paced in the background: it is slower than a preemption flush would be, so it
    /// is kept apart and only predicts until a full-speed flush has been measured (a pessimistic
    /// stand-in beats none: most pods see only periodic uploads before their first preemption).
    /// </param>
    public void RecordThroughput(long bytes, TimeSpan copy, TimeSpan verify, long? readBackBytes = null, bool fullSpeed = true)
    {
        if (bytes <= 0 || copy <= TimeSpan.Zero)
        {
            return;
        }

        lock (_gate)
        {
            ref var copyRate = ref fullSpeed ? ref _copyBytesPerSecond : ref _backgroundCopyBytesPerSecond;
            ref var verifyRate = ref fullSpeed ? ref _verifyBytesPerSecond : ref _backgroundVerifyBytesPerSecond;
            copyRate = Blend(copyRate, bytes / copy.TotalSeconds);
            var readBack = readBackBytes ?? bytes;
            if (verify > TimeSpan.Zero && readBack > 0)
            {
                verifyRate = Blend(verifyRate, readBack / verify.TotalSeconds);
            }
        }
    }

    /// <summary>
    /// The measured throughputs (bytes per second, blended over flushes), each null until measured:
    /// what a preemption flush weighs its read-backs against the deadline with. Full-speed figures
    /// when there are any, else the background ones (slower: the budget then leans to skipping).
    /// </summary>
    public (double? Copy, double? ReadBack) Throughputs
    {
        get
        {
            var (copy, readBack) = Rates();
            return (copy > 0 ? copy : null, readBack > 0 ? readBack : null);
        }
    }

    /// <summary>Full-speed throughputs when measured, else the background ones; 0 = not measured.</summary>
    private (double Copy, double ReadBack) Rates()
    {
        lock (_gate)
        {
            return _copyBytesPerSecond > 0
                ? (_copyBytesPerSecond, _verifyBytesPerSecond)
                : (_backgroundCopyBytesPerSecond, _backgroundVerifyBytesPerSecond);
        }
    }

    /// <summary>Copy plus read-back of <paramref name="bytes"/> at full speed; null until a flush has been measured.</summary>
    public TimeSpan? PredictPersistTime(long bytes)
    {
        var (copyRate, verifyRate) = Rates();
        if (copyRate <= 0)
        {
            return null;
        }

        var seconds = bytes / copyRate + (verifyRate > 0 ? bytes / verifyRate : 0);
        // A throughput read from a previous pod's record may be absurdly low; beyond this a
        // TimeSpan overflows, and it means "never" just as well.
        return seconds < NeverSeconds ? TimeSpan.FromSeconds(seconds) : TimeSpan.FromSeconds(NeverSeconds);
    }

    /// <summary>
    /// A periodic upload is running when the pod is preempted. Letting it finish keeps an older
    /// checkpoint safe; cancelling it gives the preemption dump all the bandwidth. It may finish only
    /// when both fit before the deadline; without a measurement, the newer state wins.
    /// </summary>
    public bool MayFinishInFlightUpload(long inFlightBytesLeft, long preemptionBytes, TimeSpan timeLeft)
    {
        var inFlight = PredictPersistTime(inFlightBytesLeft);
        var preemption = PredictPersistTime(preemptionBytes);
        return inFlight is not null && preemption is not null && inFlight.Value + preemption.Value <= timeLeft;
    }

    private static double Blend(double previous, double sample) => previous <= 0 ? sample : 0.5 * previous + 0.5 * sample;
}

/// <param name="Ratio">Predicted / G; the alert threshold is 0.8.</param>
public sealed record FlushPrediction(TimeSpan Predicted, double Ratio, TimeSpan RecommendedGracePeriod);
