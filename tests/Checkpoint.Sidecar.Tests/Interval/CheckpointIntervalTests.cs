using Checkpoint.Sidecar.Interval;
using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Tests.Interval;

/// <summary>The Young/Daly interval against values computed by hand, and the evidence it needs from the flush records.</summary>
public sealed class CheckpointIntervalTests
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    // sqrt(2 * 30 * 21600) = sqrt(1,296,000) = 1138.42 s: a 30 s checkpoint and a preemption every 6 h.
    [InlineData(30, 21600, 1138.42)]
    // sqrt(2 * 2 * 3600) = 120 s.
    [InlineData(2, 3600, 120)]
    // sqrt(2 * 0.5 * 86400) = 293.94 s.
    [InlineData(0.5, 86400, 293.94)]
    // cost 499 s < MTBF / 2 = 500 s: sqrt(2 * 499 * 1000) = 999.0 s, just under the MTBF.
    [InlineData(499, 1000, 998.999)]
    // cost >= MTBF / 2: Daly's bound, the MTBF itself (the formula would say 1000 s and more).
    [InlineData(500, 1000, 1000)]
    [InlineData(5000, 1000, 1000)]
    // A checkpoint that stalls nothing may be taken as often as wanted.
    [InlineData(0, 3600, 0)]
    public void YoungDaly_HandComputed(double costSeconds, double mtbfSeconds, double expectedSeconds)
    {
        var interval = CheckpointInterval.YoungDaly(TimeSpan.FromSeconds(costSeconds), TimeSpan.FromSeconds(mtbfSeconds));

        Assert.Equal(expectedSeconds, interval.TotalSeconds, 2);
    }

    [Fact]
    public void YoungDaly_NoMtbf_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointInterval.YoungDaly(TimeSpan.FromSeconds(30), TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointInterval.YoungDaly(TimeSpan.FromSeconds(-1), TimeSpan.FromHours(1)));
    }

    [Theory]
    // Without a prior: at least MinPreemptions (2) preemptions, else not known.
    [InlineData(0, 36000, 2, 0, null)]
    [InlineData(1, 36000, 2, 0, null)]
    [InlineData(2, 36000, 2, 0, 18000.0)]
    [InlineData(3, 36000, 2, 0, 12000.0)]
    [InlineData(1, 36000, 1, 0, 36000.0)]
    // A minimum of 0 still needs one preemption: no preemption is no rate.
    [InlineData(0, 36000, 0, 0, null)]
    // With a prior of 6 h: one more preemption over 6 h more. No data: the prior itself.
    [InlineData(0, 0, 2, 21600, 21600.0)]
    // (10 h + 6 h) / (1 + 1) = 8 h.
    [InlineData(1, 36000, 2, 21600, 28800.0)]
    // (10 h + 6 h) / (3 + 1) = 4 h.
    [InlineData(3, 36000, 2, 21600, 14400.0)]
    public void Mtbf_MinimumSampleAndPrior(int preemptions, double spanSeconds, int minPreemptions, double priorSeconds, double? expectedSeconds)
    {
        var mtbf = CheckpointInterval.Mtbf(preemptions, TimeSpan.FromSeconds(spanSeconds), new IntervalPolicy(minPreemptions, TimeSpan.FromSeconds(priorSeconds)));

        Assert.Equal(expectedSeconds, mtbf?.TotalSeconds);
    }

    [Fact]
    public void FromRecords_NoRecords_NothingKnown()
    {
        var result = CheckpointInterval.FromRecords([], Now, IntervalPolicy.Default);

        Assert.Equal(new IntervalRecommendation(null, 0, TimeSpan.Zero, null, null, null), result);
    }

    [Fact]
    public void FromRecords_SeveralPods_PreemptionCountedOncePerJobAndCostOfSlowestPod()
    {
        // 12 h of a two-pod job: periodic checkpoints every 20 min, each stalling pod-0 for 25 + 1 s and
        // pod-1 for 29 + 1 s (the job waits for the slower); two preemptions, each written by both pods.
        var start = Now.AddHours(-12);
        List<FlushRecord> records = [];
        for (var i = 0; i < 9; i++)
        {
            var at = Now.AddMinutes(-20 * (i + 1));
            records.Add(Periodic($"p{i}", "pod-0", at, notify: 1, dump: 25));
            records.Add(Periodic($"p{i}", "pod-1", at.AddSeconds(0.2), notify: 1, dump: 29));
        }

        records.Add(Periodic("first", "pod-0", start, notify: 1, dump: 25));
        records.Add(Preemption("pre1", "pod-0", Now.AddHours(-8)));
        records.Add(Preemption("pre1", "pod-1", Now.AddHours(-8).AddSeconds(2)));
        // The other pod's sidecar named its flush differently and started it 20 s later: still the same preemption.
        records.Add(Preemption("pre2", "pod-0", Now.AddHours(-4)));
        records.Add(Preemption("pre2-other", "pod-1", Now.AddHours(-4).AddSeconds(20)));
        // The same record read twice (from storage and from this pod's own report).
        records.Add(Preemption("pre2", "pod-0", Now.AddHours(-4)));

        var result = CheckpointInterval.FromRecords(records, Now, IntervalPolicy.Default);

        Assert.Equal(2, result.Preemptions);
        Assert.Equal(TimeSpan.FromHours(12), result.ObservedSpan);
        Assert.Equal(TimeSpan.FromHours(6), result.Mtbf);
        Assert.Equal(30, result.PeriodicCost!.Value.TotalSeconds, 6);
        Assert.Equal(TimeSpan.FromMinutes(20), result.ObservedPeriodicInterval);
        // sqrt(2 * 30 * 21600) = 1138.42 s.
        Assert.Equal(1138.42, result.Recommended!.Value.TotalSeconds, 2);
    }

    [Fact]
    public void FromRecords_OnePreemption_NotEnoughDataForAnMtbf()
    {
        List<FlushRecord> records =
        [
            Periodic("p1", "pod-0", Now.AddHours(-10), notify: 0, dump: 30),
            Preemption("pre1", "pod-0", Now.AddHours(-5)),
        ];

        var result = CheckpointInterval.FromRecords(records, Now, IntervalPolicy.Default);

        Assert.Equal(1, result.Preemptions);
        Assert.Equal(TimeSpan.FromSeconds(30), result.PeriodicCost);
        Assert.Null(result.Mtbf);
        Assert.Null(result.Recommended);
        // One periodic checkpoint has no interval.
        Assert.Null(result.ObservedPeriodicInterval);
    }

    [Fact]
    public void FromRecords_DrillsAreNotPreemptions()
    {
        List<FlushRecord> records =
        [
            Preemption("a", "pod-0", Now.AddHours(-6)),
            Preemption("drill-1", "pod-0", Now.AddHours(-4)) with { Drill = true, Cause = "PreemptionDrill" },
            Preemption("drill-2", "pod-0", Now.AddHours(-2)) with { Drill = true, Cause = "PreemptionDrill" },
            Preemption("b", "pod-0", Now.AddHours(-3)),
        ];

        var result = CheckpointInterval.FromRecords(records, Now, IntervalPolicy.Default);

        Assert.Equal(2, result.Preemptions);
        Assert.Equal(TimeSpan.FromHours(3), result.Mtbf);
    }

    [Fact]
    public void FromRecords_PreemptionsButNoPeriodicCheckpoint_MtbfWithoutRecommendation()
    {
        List<FlushRecord> records = [Preemption("a", "pod-0", Now.AddHours(-6)), Preemption("b", "pod-0", Now.AddHours(-3))];

        var result = CheckpointInterval.FromRecords(records, Now, IntervalPolicy.Default);

        Assert.Equal(TimeSpan.FromHours(3), result.Mtbf);
        Assert.Null(result.PeriodicCost);
        Assert.Null(result.Recommended);
    }

    [Fact]
    public void FromRecords_CostIsMedianOfRecentCommittedPeriodicOnly()
    {
        // An outlier (a 300 s dump on a busy disk), a failed periodic and a manual one do not move the median.
        List<FlushRecord> records =
        [
            Periodic("a", "pod-0", Now.AddMinutes(-50), notify: 0, dump: 10),
            Periodic("b", "pod-0", Now.AddMinutes(-40), notify: 0, dump: 300),
            Periodic("c", "pod-0", Now.AddMinutes(-30), notify: 0, dump: 12),
            Periodic("d", "pod-0", Now.AddMinutes(-20), notify: 0, dump: 11) with { Outcome = "failed", Timings = null },
            Periodic("e", "pod-0", Now.AddMinutes(-10), notify: 0, dump: 11) with { Reason = "manual" },
        ];

        var result = CheckpointInterval.FromRecords(records, Now, IntervalPolicy.Default);

        Assert.Equal(TimeSpan.FromSeconds(12), result.PeriodicCost);
        // Periodic starts at -50, -40, -30, -20 min: 10 min apart.
        Assert.Equal(TimeSpan.FromMinutes(10), result.ObservedPeriodicInterval);
    }

    [Fact]
    public void FromRecords_RecordFromTheFuture_Ignored()
    {
        // A pod whose clock runs a day ahead would otherwise make the span negative, or add a preemption that has not happened.
        List<FlushRecord> records =
        [
            Preemption("a", "pod-0", Now.AddHours(-6)),
            Preemption("b", "pod-0", Now.AddHours(-3)),
            Preemption("c", "pod-1", Now.AddDays(1)),
        ];

        var result = CheckpointInterval.FromRecords(records, Now, IntervalPolicy.Default);

        Assert.Equal(2, result.Preemptions);
        Assert.Equal(TimeSpan.FromHours(3), result.Mtbf);
    }

    [Fact]
    public void FromRecords_WithPrior_RecommendsBeforeAnyPreemption()
    {
        List<FlushRecord> records = [Periodic("a", "pod-0", Now.AddHours(-2), notify: 0, dump: 30)];

        var result = CheckpointInterval.FromRecords(records, Now, new IntervalPolicy(2, TimeSpan.FromHours(4)));

        // (2 h + 4 h) / (0 + 1) = 6 h; sqrt(2 * 30 * 21600) = 1138.42 s.
        Assert.Equal(TimeSpan.FromHours(6), result.Mtbf);
        Assert.Equal(1138.42, result.Recommended!.Value.TotalSeconds, 2);
    }

    internal static FlushRecord Periodic(string id, string pod, DateTimeOffset at, double notify, double dump) => new()
    {
        CheckpointId = id,
        Pod = pod,
        Reason = "periodic",
        Outcome = "committed",
        TriggeredAt = at,
        EndedAt = at.AddSeconds(notify + dump + 5),
        GracePeriodSeconds = 30,
        DeadlineMissed = false,
        Timings = new FlushRecordTimings(notify, dump, 4, 1, 0, notify + dump + 5, 0, 1 << 20),
    };

    internal static FlushRecord Preemption(string id, string pod, DateTimeOffset at) => new()
    {
        CheckpointId = id,
        Pod = pod,
        Reason = "preemption",
        Cause = "PreemptionByScheduler",
        Outcome = "committed",
        TriggeredAt = at,
        EndedAt = at.AddSeconds(10),
        GracePeriodSeconds = 30,
        DeadlineMissed = false,
        Timings = new FlushRecordTimings(0.1, 2, 6, 1, 0.5, 9.6, 0.32, 1 << 20),
    };
}
