using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Interval;

/// <summary>How much evidence an MTBF needs before it is shown.</summary>
/// <param name="MinPreemptions">Without a prior, fewer preemptions than this say "not enough data", never a number.</param>
/// <param name="Prior">
/// An MTBF assumed before any data (zero: none). With one, the estimate counts it as one more
/// preemption seen over that much more time, so it is known at once and fades as preemptions are seen.
/// </param>
public sealed record IntervalPolicy(int MinPreemptions, TimeSpan Prior)
{
    public static readonly IntervalPolicy Default = new(2, TimeSpan.Zero);
}

/// <summary>The Young/Daly checkpoint interval of a job and every input it came from; null: not known yet.</summary>
/// <param name="PeriodicCost">What a periodic checkpoint stalls training: notify + dump of the slowest pod, median of recent checkpoints.</param>
/// <param name="Preemptions">Preemptions of the job seen in its flush records (the pods of one preemption count once).</param>
/// <param name="ObservedSpan">From the oldest flush record to now: the time the preemptions were counted over.</param>
/// <param name="ObservedPeriodicInterval">The median time between the job's periodic checkpoints: the interval the trainer actually uses.</param>
public sealed record IntervalRecommendation(
    TimeSpan? PeriodicCost,
    int Preemptions,
    TimeSpan ObservedSpan,
    TimeSpan? Mtbf,
    TimeSpan? ObservedPeriodicInterval,
    TimeSpan? Recommended);

/// <summary>
/// The checkpoint interval that loses the least training to checkpoints and preemptions together:
/// Young's <c>sqrt(2 * cost * MTBF)</c> (J. W. Young, 1974), with Daly's bound (2006) where it
/// breaks down, from the flush records the job's pods left on the shared storage. Pure: the records
/// and the clock come in, numbers go out.
/// </summary>
public static class CheckpointInterval
{
    /// <summary>Recent checkpoints only: the cost follows the model's size as it changes.</summary>
    private const int CostSamples = 9;

    /// <summary>Pods of one job-wide preemption start their flushes within this of each other at least.</summary>
    private static readonly TimeSpan MinPreemptionWindow = TimeSpan.FromSeconds(30);

    /// <summary>
    /// <c>sqrt(2 * cost * mtbf)</c>. Once a checkpoint costs half the MTBF or more, the formula would
    /// checkpoint more than once between preemptions for nothing: Daly's bound is the MTBF itself.
    /// </summary>
    public static TimeSpan YoungDaly(TimeSpan cost, TimeSpan mtbf)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(cost, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(mtbf, TimeSpan.Zero);
        return cost >= mtbf / 2 ? mtbf : TimeSpan.FromSeconds(Math.Sqrt(2 * cost.TotalSeconds * mtbf.TotalSeconds));
    }

    /// <summary>span / preemptions, or null when too few were seen and no prior was given.</summary>
    public static TimeSpan? Mtbf(int preemptions, TimeSpan span, IntervalPolicy policy)
    {
        if (span < TimeSpan.Zero)
        {
            span = TimeSpan.Zero;
        }

        if (policy.Prior > TimeSpan.Zero)
        {
            return (span + policy.Prior) / (preemptions + 1);
        }

        return preemptions >= Math.Max(1, policy.MinPreemptions) && span > TimeSpan.Zero ? span / preemptions : null;
    }

    /// <param name="records">The job's trusted flush records, any order; one pod's record of a checkpoint counted once.</param>
    public static IntervalRecommendation FromRecords(IEnumerable<FlushRecord> records, DateTimeOffset now, IntervalPolicy policy)
    {
        // A record from after now comes from a pod whose clock runs ahead, or a forged one: it would make the span negative.
        var known = records
            .Where(r => r.TriggeredAt <= now)
            .DistinctBy(r => (r.Pod, r.CheckpointId))
            .ToList();
        var span = known.Count == 0 ? TimeSpan.Zero : now - known.Min(r => r.TriggeredAt);
        var preemptions = CountPreemptions(known);
        var cost = PeriodicCost(known);
        var mtbf = Mtbf(preemptions, span, policy);
        return new IntervalRecommendation(
            cost, preemptions, span, mtbf, PeriodicInterval(known),
            cost is { } c && mtbf is { } m ? YoungDaly(c, m) : null);
    }

    /// <summary>
    /// Every pod of the job writes a record of the preemption checkpoint (the preempted pod and those
    /// that dumped with it), within a grace period of each other: those are one preemption of the job.
    /// Failed preemption flushes count too: the preemption happened all the same. A drill runs as a
    /// preemption flush but preempted nothing.
    /// </summary>
    private static int CountPreemptions(IEnumerable<FlushRecord> records)
    {
        var count = 0;
        DateTimeOffset? windowEnd = null;
        foreach (var record in records.Where(r => r.Reason == "preemption" && r.Drill != true).OrderBy(r => r.TriggeredAt))
        {
            if (windowEnd is { } end && record.TriggeredAt <= end)
            {
                continue;
            }

            count++;
            var window = TimeSpan.FromSeconds(record.GracePeriodSeconds);
            windowEnd = record.TriggeredAt + (window > MinPreemptionWindow ? window : MinPreemptionWindow);
        }

        return count;
    }

    /// <summary>
    /// The trainer stalls for the notify and dump phases; the copy to storage runs in the background
    /// while training goes on. Ranks step together, so a job-wide checkpoint stalls as long as its slowest pod.
    /// </summary>
    private static TimeSpan? PeriodicCost(IEnumerable<FlushRecord> records)
    {
        var stalls = records
            .Where(r => r is { Reason: "periodic", Outcome: "committed", Timings: not null })
            .GroupBy(r => r.CheckpointId)
            .Select(g => (TriggeredAt: g.Min(r => r.TriggeredAt), Stall: g.Max(r => r.Timings!.NotifySeconds + r.Timings.DumpSeconds)))
            .OrderByDescending(s => s.TriggeredAt)
            .Take(CostSamples)
            .Select(s => s.Stall)
            .ToList();
        return stalls.Count == 0 ? null : TimeSpan.FromSeconds(Median(stalls));
    }

    /// <summary>Median gap between successive periodic checkpoints: a restart after a preemption makes one long gap, not a new mean.</summary>
    private static TimeSpan? PeriodicInterval(IEnumerable<FlushRecord> records)
    {
        var starts = records
            .Where(r => r.Reason == "periodic")
            .GroupBy(r => r.CheckpointId)
            .Select(g => g.Min(r => r.TriggeredAt))
            .Order()
            .ToList();
        var gaps = starts.Zip(starts.Skip(1), (a, b) => (b - a).TotalSeconds).TakeLast(CostSamples).ToList();
        return gaps.Count == 0 ? null : TimeSpan.FromSeconds(Median(gaps));
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        var middle = values.Count / 2;
        return values.Count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
    }
}
