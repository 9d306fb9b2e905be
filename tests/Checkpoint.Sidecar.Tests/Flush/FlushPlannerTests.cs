using Checkpoint.Sidecar.Flush;

namespace Checkpoint.Sidecar.Tests.Flush;

public sealed class FlushPlannerTests
{
    private static readonly DateTimeOffset Trigger = new(2026, 11, 29, 2, 45, 0, TimeSpan.Zero);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Margin = TimeSpan.FromSeconds(2);

    [Fact]
    public void PreemptionDeadline_NoDeletionTimestamp_IsTriggerPlusGraceMinusMargin()
    {
        var planner = new FlushPlanner(Grace, Margin);

        Assert.Equal(Trigger + TimeSpan.FromSeconds(28), planner.PreemptionDeadline(Trigger));
    }

    [Fact]
    public void PreemptionDeadline_GraceFromPodSpec_UsesIt()
    {
        var planner = new FlushPlanner(Grace, Margin);

        planner.UseGracePeriod(TimeSpan.FromSeconds(120));

        Assert.Equal(TimeSpan.FromSeconds(120), planner.GracePeriod);
        Assert.Equal(Trigger + TimeSpan.FromSeconds(118), planner.PreemptionDeadline(Trigger));
    }

    [Fact]
    public void PreemptionDeadline_DeletionTimestamp_IsDeletionMinusMargin()
    {
        var planner = new FlushPlanner(Grace, Margin);
        var deletion = Trigger + TimeSpan.FromSeconds(10);

        Assert.Equal(Trigger + TimeSpan.FromSeconds(8), planner.PreemptionDeadline(Trigger, deletion));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(-5)]
    public void PreemptionDeadline_DeletionWithinMargin_IsNeverBeforeTrigger(double deletionAfterTriggerSeconds)
    {
        var planner = new FlushPlanner(Grace, Margin);

        Assert.Equal(Trigger, planner.PreemptionDeadline(Trigger, Trigger + TimeSpan.FromSeconds(deletionAfterTriggerSeconds)));
    }

    [Fact]
    public void PreemptionDeadline_GraceShorterThanMargin_IsTrigger()
    {
        var planner = new FlushPlanner(TimeSpan.FromSeconds(1), Margin);

        Assert.Equal(Trigger, planner.PreemptionDeadline(Trigger));
    }

    [Fact]
    public void Predict_AfterDeadlineMissWithoutMeasurement_RecommendsMoreThanTheGraceItMissed()
    {
        var planner = new FlushPlanner(Grace, Margin);
        Assert.Null(planner.Predict());

        planner.RecordDeadlineMiss(TimeSpan.FromSeconds(28));

        var prediction = planner.Predict()!;
        Assert.Equal(TimeSpan.FromSeconds(28), prediction.Predicted);
        Assert.Equal(TimeSpan.FromSeconds(37), prediction.RecommendedGracePeriod);
        Assert.True(prediction.Ratio > 0.8);
    }

    [Fact]
    public void Predict_MeasuredFlushShorterThanAMiss_PredictsAtLeastTheMiss()
    {
        var planner = new FlushPlanner(Grace, Margin);
        planner.RecordFlush(new FlushTimings("c", CheckpointReason.Periodic, TimeSpan.Zero, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1),
            TimeSpan.FromSeconds(1), TimeSpan.Zero, TimeSpan.FromSeconds(3), Grace, 1000, TimeSpan.Zero));
        Assert.Equal(TimeSpan.FromSeconds(3), planner.Predict()!.Predicted);

        planner.RecordDeadlineMiss(TimeSpan.FromSeconds(28));

        Assert.Equal(TimeSpan.FromSeconds(28), planner.Predict()!.Predicted);
    }

    [Fact]
    public void PredictPersistTime_NoMeasurement_IsNull()
    {
        Assert.Null(new FlushPlanner(Grace, Margin).PredictPersistTime(1_000_000));
    }

    [Fact]
    public void PredictPersistTime_AfterMeasurement_IsBytesOverCopyRatePlusBytesOverVerifyRate()
    {
        var planner = new FlushPlanner(Grace, Margin);

        // 1000 MB copied in 2 s (500 MB/s) and read back in 1 s (1000 MB/s).
        planner.RecordThroughput(1_000_000_000, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1));

        Assert.Equal(TimeSpan.FromSeconds(3), planner.PredictPersistTime(1_000_000_000));
        Assert.Equal(TimeSpan.FromSeconds(6), planner.PredictPersistTime(2_000_000_000));
    }

    [Fact]
    public void PredictPersistTime_SecondMeasurement_BlendsRates()
    {
        var planner = new FlushPlanner(Grace, Margin);
        planner.RecordThroughput(1000, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        planner.RecordThroughput(3000, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        // Both rates blend to 2000 B/s.
        Assert.Equal(TimeSpan.FromSeconds(2), planner.PredictPersistTime(2000));
    }

    [Fact]
    public void PredictPersistTime_BackgroundUploadAfterFullSpeedFlush_KeepsFullSpeedRate()
    {
        var planner = new FlushPlanner(Grace, Margin);
        planner.RecordThroughput(1000, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        // A periodic upload paced in the background, ten times slower.
        planner.RecordThroughput(1000, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10), fullSpeed: false);

        Assert.Equal(TimeSpan.FromSeconds(2), planner.PredictPersistTime(1000));
    }

    [Fact]
    public void PredictPersistTime_OnlyBackgroundUploads_PredictsFromThemUntilAFullSpeedFlush()
    {
        var planner = new FlushPlanner(Grace, Margin);
        planner.RecordThroughput(1000, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10), fullSpeed: false);

        // Pessimistic, but a prediction: the early warning works before the first preemption.
        Assert.Equal(TimeSpan.FromSeconds(20), planner.PredictPersistTime(1000));

        planner.RecordThroughput(1000, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        Assert.Equal(TimeSpan.FromSeconds(2), planner.PredictPersistTime(1000));
    }

    [Fact]
    public void RecordFlush_BackgroundPeriodic_DoesNotSlowTheFullSpeedPrediction()
    {
        var planner = new FlushPlanner(Grace, Margin);
        planner.RecordFlush(Timings(CheckpointReason.Preemption, copySeconds: 1));

        planner.RecordFlush(Timings(CheckpointReason.Periodic, copySeconds: 8), fullSpeed: false);

        Assert.Equal(TimeSpan.FromSeconds(2), planner.PredictPersistTime(1000));
    }

    private static FlushTimings Timings(CheckpointReason reason, double copySeconds) => new(
        "c", reason, TimeSpan.Zero, TimeSpan.Zero, TimeSpan.FromSeconds(copySeconds), TimeSpan.FromSeconds(1), TimeSpan.Zero,
        TimeSpan.FromSeconds(copySeconds + 1), Grace, 1000);

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(1000, 0.0)]
    public void RecordThroughput_NothingMeasurable_IsIgnored(long bytes, double copySeconds)
    {
        var planner = new FlushPlanner(Grace, Margin);

        planner.RecordThroughput(bytes, TimeSpan.FromSeconds(copySeconds), TimeSpan.FromSeconds(1));

        Assert.Null(planner.PredictPersistTime(1000));
    }

    [Fact]
    public void MayFinishInFlightUpload_NoMeasurement_IsFalse()
    {
        var planner = new FlushPlanner(Grace, Margin);

        Assert.False(planner.MayFinishInFlightUpload(1, 1, TimeSpan.FromDays(1)));
    }

    [Theory]
    [InlineData(6.0, true)]
    [InlineData(10.0, true)]
    [InlineData(5.9, false)]
    public void MayFinishInFlightUpload_AfterMeasurement_TrueOnlyWhenBothFit(double secondsLeft, bool expected)
    {
        var planner = new FlushPlanner(Grace, Margin);
        planner.RecordThroughput(1000, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1));

        // In flight: 1000 B left (3 s); preemption: 1000 B (3 s).
        Assert.Equal(expected, planner.MayFinishInFlightUpload(1000, 1000, TimeSpan.FromSeconds(secondsLeft)));
    }

    [Fact]
    public void MayFinishInFlightUpload_ThroughputFromImplausiblySlowRecord_AnswersWithoutOverflow()
    {
        var planner = new FlushPlanner(Grace, Margin);
        // From the previous pod's flush record, which anyone may have written: one byte in a year.
        planner.RecordThroughput(1, TimeSpan.FromDays(365), TimeSpan.FromDays(365));

        // A terabyte at that rate is far beyond what a TimeSpan holds: never, rather than an exception in a preemption.
        Assert.False(planner.MayFinishInFlightUpload(1L << 40, 1L << 40, TimeSpan.FromSeconds(20)));
        Assert.True(planner.PredictPersistTime(1L << 40) > TimeSpan.FromDays(365 * 100));
    }
}
