using System.Globalization;
using Checkpoint.Sidecar.Flush;

namespace Checkpoint.Sidecar.Kubernetes;

/// <summary>
/// What preempting this pod would cost now, in the form published as annotations on the pod for a
/// scheduler policy or an operator to read. The keys are a stable contract (README, "Cost to
/// preempt"): renaming one breaks their readers.
/// </summary>
/// <remarks>
/// Training at risk grows every second; publishing it would mean a patch a second. The commit time
/// is published instead, and readers subtract it from their own clock.
/// </remarks>
internal sealed record PodCost(TimeSpan GracePeriod, FlushPrediction? Prediction, long? NewestCommitStep, DateTimeOffset? NewestCommitTime)
{
    /// <summary>The prefix of every label and annotation the project reads or writes (inject, metrics, these).</summary>
    public const string Prefix = "checkpoint-sidecar/";

    public const string PredictedFlushSecondsKey = Prefix + "predicted-preemption-flush-seconds";
    public const string PredictedFlushRatioKey = Prefix + "predicted-preemption-flush-ratio";
    public const string GracePeriodSecondsKey = Prefix + "grace-period-seconds";
    public const string RecommendedGracePeriodSecondsKey = Prefix + "recommended-grace-period-seconds";
    public const string NewestCommitStepKey = Prefix + "newest-commit-step";
    public const string NewestCommitTimeKey = Prefix + "newest-commit-time";

    /// <summary>A prediction that moved less than this (and less than <see cref="RelativeNoise"/>) is noise, not news.</summary>
    private static readonly TimeSpan AbsoluteNoise = TimeSpan.FromSeconds(0.5);

    private const double RelativeNoise = 0.1;

    /// <summary>Only what is known: before the first flush there is no prediction, before the first commit no step.</summary>
    public IReadOnlyDictionary<string, string> ToAnnotations()
    {
        var annotations = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            [GracePeriodSecondsKey] = Number(GracePeriod.TotalSeconds, "0.###"),
        };
        if (Prediction is { } p)
        {
            annotations[PredictedFlushSecondsKey] = Number(p.Predicted.TotalSeconds, "0.0##");
            annotations[PredictedFlushRatioKey] = Number(p.Ratio, "0.0##");
            annotations[RecommendedGracePeriodSecondsKey] = Number(p.RecommendedGracePeriod.TotalSeconds, "0");
        }

        if (NewestCommitStep is { } step && NewestCommitTime is { } time)
        {
            annotations[NewestCommitStepKey] = step.ToString(CultureInfo.InvariantCulture);
            // RFC 3339 in UTC to the second, as Kubernetes writes its own timestamps.
            annotations[NewestCommitTimeKey] = time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        }

        return annotations;
    }

    /// <summary>
    /// Worth a patch: a new commit, another G or recommendation, a prediction that appeared, crossed
    /// the budget, or moved by more than noise. A prediction drifting by tenths of a second is not.
    /// </summary>
    public bool DiffersMeaningfullyFrom(PodCost? published)
    {
        if (published is null
            || NewestCommitStep != published.NewestCommitStep
            || NewestCommitTime != published.NewestCommitTime
            || GracePeriod != published.GracePeriod)
        {
            return true;
        }

        if (Prediction is not { } now || published.Prediction is not { } before)
        {
            return Prediction is not null || published.Prediction is not null;
        }

        var moved = (now.Predicted - before.Predicted).Duration();
        return now.RecommendedGracePeriod != before.RecommendedGracePeriod
            || now.Ratio > 1 != before.Ratio > 1
            || double.IsInfinity(now.Ratio) != double.IsInfinity(before.Ratio)
            || (moved > AbsoluteNoise && moved.TotalSeconds > RelativeNoise * before.Predicted.TotalSeconds);
    }

    /// <summary>The predicted flush does not fit the grace period less the safety margin: a preemption now would lose the work since the last commit.</summary>
    public static bool GraceTooShort(FlushPrediction? prediction, TimeSpan gracePeriod, TimeSpan safetyMargin) =>
        prediction is not null && (gracePeriod <= safetyMargin || prediction.Predicted > gracePeriod - safetyMargin);

    private static string Number(double value, string format) =>
        double.IsPositiveInfinity(value) ? "+Inf" : value.ToString(format, CultureInfo.InvariantCulture);
}

/// <summary>
/// At most one write per interval, the first at once: attempts count, not successes, so an API
/// that keeps failing is retried once an interval and never hammered.
/// </summary>
internal sealed class WriteRateLimit(TimeSpan interval, TimeProvider time)
{
    private long? _lastAttempt;

    public TimeSpan Interval => interval;

    /// <summary>How long until the next write may go: zero when it may go now.</summary>
    public TimeSpan Wait()
    {
        if (_lastAttempt is not { } last)
        {
            return TimeSpan.Zero;
        }

        var elapsed = time.GetElapsedTime(last);
        return elapsed >= interval ? TimeSpan.Zero : interval - elapsed;
    }

    public void Attempted() => _lastAttempt = time.GetTimestamp();
}

/// <summary>
/// When the pod's annotations are patched. Values that change while a patch waits for the rate
/// limit are coalesced: the patch, when it goes, carries the newest values, computed then.
/// </summary>
internal sealed class PodCostSchedule(TimeSpan interval, TimeProvider time)
{
    private readonly WriteRateLimit _limit = new(interval, time);

    /// <summary>What the pod's annotations say now, as far as the sidecar knows.</summary>
    public PodCost? Published { get; private set; }

    /// <summary>Null: nothing worth a patch. Zero: patch <paramref name="current"/> now. Else: how long to wait first.</summary>
    public TimeSpan? Due(PodCost current) => current.DiffersMeaningfullyFrom(Published) ? _limit.Wait() : null;

    public void Attempted() => _limit.Attempted();

    public void Succeeded(PodCost published) => Published = published;
}

/// <summary>
/// When to post the GracePeriodTooShort Event: when the predicted flush does not fit, once per
/// recommended value (not once per flush or scrape), and at most once per interval. Once the flush
/// fits again, a later shortfall is news again.
/// </summary>
internal sealed class GracePeriodAdvice(TimeSpan interval, TimeProvider time)
{
    private readonly WriteRateLimit _limit = new(interval, time);
    private TimeSpan? _advised;

    /// <summary>Null: nothing to say. Zero: advise <see cref="FlushPrediction.RecommendedGracePeriod"/> now. Else: how long to wait first.</summary>
    public TimeSpan? Due(PodCost current, TimeSpan safetyMargin)
    {
        if (!PodCost.GraceTooShort(current.Prediction, current.GracePeriod, safetyMargin))
        {
            _advised = null;
            return null;
        }

        return current.Prediction!.RecommendedGracePeriod == _advised ? null : _limit.Wait();
    }

    public void Attempted() => _limit.Attempted();

    public void Advised(TimeSpan recommended) => _advised = recommended;
}
