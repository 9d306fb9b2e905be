using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Kubernetes;
using Microsoft.Extensions.Time.Testing;

namespace Checkpoint.Sidecar.Tests.Kubernetes;

/// <summary>The pod's cost annotations: their values, when a change is worth a patch, and the rate limit that coalesces patches.</summary>
public sealed class PodCostTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Margin = TimeSpan.FromSeconds(2);
    private static readonly DateTimeOffset Committed = new(2026, 12, 1, 10, 0, 0, TimeSpan.Zero);

    [Fact]
    public void ToAnnotations_PredictionAndCommit_AreTheContractValues()
    {
        var cost = new PodCost(Grace, Prediction(12.25), 1200, Committed.AddMilliseconds(400));

        var annotations = cost.ToAnnotations();

        Assert.Equal(new Dictionary<string, string>
        {
            ["checkpoint-sidecar/grace-period-seconds"] = "30",
            ["checkpoint-sidecar/predicted-preemption-flush-seconds"] = "12.25",
            ["checkpoint-sidecar/predicted-preemption-flush-ratio"] = "0.408",
            ["checkpoint-sidecar/recommended-grace-period-seconds"] = "18",
            ["checkpoint-sidecar/newest-commit-step"] = "1200",
            ["checkpoint-sidecar/newest-commit-time"] = "2026-12-01T10:00:00Z",
        }, annotations);
    }

    [Fact]
    public void ToAnnotations_NothingMeasuredYet_OnlyTheGracePeriod()
    {
        var annotations = new PodCost(Grace, null, null, null).ToAnnotations();

        Assert.Equal(["checkpoint-sidecar/grace-period-seconds"], annotations.Keys);
    }

    [Fact]
    public void ToAnnotations_NoBudget_RatioIsPlusInf()
    {
        var cost = new PodCost(TimeSpan.FromSeconds(1), new FlushPlanner(TimeSpan.FromSeconds(1), Margin).Predict(), null, null);

        Assert.Equal("+Inf", cost.ToAnnotations()[PodCost.PredictedFlushRatioKey]);
    }

    [Theory]
    [InlineData(10.0, 10.4, false)] // within 0.5 s
    [InlineData(40.1, 40.7, false)] // within 10 %, same recommendation
    [InlineData(10.0, 11.2, true)]
    [InlineData(1.0, 1.6, true)]
    public void DiffersMeaningfullyFrom_PredictionMoves_OnlyBeyondNoise(double before, double now, bool differs)
    {
        var published = new PodCost(TimeSpan.FromSeconds(100), Prediction(before, 100), 5, Committed);
        var current = published with { Prediction = Prediction(now, 100) };

        Assert.Equal(differs, current.DiffersMeaningfullyFrom(published));
    }

    [Fact]
    public void DiffersMeaningfullyFrom_NewCommitOrGraceOrRatioCrossingOne_Differs()
    {
        var published = new PodCost(Grace, Prediction(29.8), 5, Committed);

        Assert.False((published with { }).DiffersMeaningfullyFrom(published));
        Assert.True((published with { NewestCommitStep = 6, NewestCommitTime = Committed.AddMinutes(1) }).DiffersMeaningfullyFrom(published));
        Assert.True((published with { GracePeriod = TimeSpan.FromSeconds(60) }).DiffersMeaningfullyFrom(published));
        // 0.1 s is noise, but not when it crosses G.
        Assert.True((published with { Prediction = Prediction(30.1) }).DiffersMeaningfullyFrom(published));
        Assert.True((published with { Prediction = null }).DiffersMeaningfullyFrom(published));
        Assert.True(published.DiffersMeaningfullyFrom(null));
    }

    [Fact]
    public void Schedule_FirstPatch_GoesAtOnce()
    {
        var schedule = new PodCostSchedule(Interval, new FakeTimeProvider());

        Assert.Equal(TimeSpan.Zero, schedule.Due(new PodCost(Grace, null, null, null)));
    }

    [Fact]
    public void Schedule_CommitsWithinTheInterval_CoalesceIntoOnePatchOfTheNewest()
    {
        var time = new FakeTimeProvider();
        var schedule = new PodCostSchedule(Interval, time);
        var first = new PodCost(Grace, Prediction(3), 1, Committed);
        schedule.Attempted();
        schedule.Succeeded(first);

        for (var step = 2; step <= 10; step++)
        {
            time.Advance(TimeSpan.FromSeconds(3));
            var current = first with { NewestCommitStep = step, NewestCommitTime = Committed.AddSeconds(3 * step) };

            // Waits for the rest of the interval since the last patch, however many commits came since.
            Assert.Equal(Interval - TimeSpan.FromSeconds(3 * (step - 1)), schedule.Due(current));
        }

        time.Advance(TimeSpan.FromSeconds(3));
        var newest = first with { NewestCommitStep = 11, NewestCommitTime = Committed.AddSeconds(33) };
        Assert.Equal(TimeSpan.Zero, schedule.Due(newest));
        schedule.Attempted();
        schedule.Succeeded(newest);
        Assert.Null(schedule.Due(newest));
        Assert.Equal(newest, schedule.Published);
    }

    [Fact]
    public void Schedule_PatchFailed_RetriedAfterAnIntervalWithTheSameValues()
    {
        var time = new FakeTimeProvider();
        var schedule = new PodCostSchedule(Interval, time);
        var cost = new PodCost(Grace, Prediction(3), 1, Committed);
        schedule.Attempted(); // and the API answered 500: never Succeeded

        Assert.Equal(Interval, schedule.Due(cost));
        time.Advance(Interval - TimeSpan.FromTicks(1));
        Assert.Equal(TimeSpan.FromTicks(1), schedule.Due(cost));
        time.Advance(TimeSpan.FromTicks(1));
        Assert.Equal(TimeSpan.Zero, schedule.Due(cost));
        Assert.Null(schedule.Published);
    }

    [Fact]
    public void Schedule_NoMeaningfulChange_NoPatchEvenAfterTheInterval()
    {
        var time = new FakeTimeProvider();
        var schedule = new PodCostSchedule(Interval, time);
        var cost = new PodCost(Grace, Prediction(10), 1, Committed);
        schedule.Attempted();
        schedule.Succeeded(cost);

        time.Advance(Interval * 10);

        Assert.Null(schedule.Due(cost with { Prediction = Prediction(10.3) }));
    }

    [Fact]
    public void Advice_TooShort_OncePerRecommendation()
    {
        var time = new FakeTimeProvider();
        var advice = new GracePeriodAdvice(Interval, time);
        var tooShort = new PodCost(Grace, Prediction(29), 3, Committed);

        Assert.Equal(TimeSpan.Zero, advice.Due(tooShort, Margin));
        advice.Attempted();
        advice.Advised(tooShort.Prediction!.RecommendedGracePeriod);

        // Every flush and every look again predicts the same: nothing more to say, however long it lasts.
        time.Advance(Interval * 10);
        Assert.Null(advice.Due(tooShort with { NewestCommitStep = 4 }, Margin));

        // A larger checkpoint needs more: news, at once since the last Event is an interval old.
        var worse = tooShort with { Prediction = Prediction(60) };
        Assert.NotEqual(tooShort.Prediction.RecommendedGracePeriod, worse.Prediction!.RecommendedGracePeriod);
        Assert.Equal(TimeSpan.Zero, advice.Due(worse, Margin));
    }

    [Fact]
    public void Advice_RecommendationChangesWithinTheInterval_WaitsForIt()
    {
        var time = new FakeTimeProvider();
        var advice = new GracePeriodAdvice(Interval, time);
        advice.Due(new PodCost(Grace, Prediction(29), 3, Committed), Margin);
        advice.Attempted();
        advice.Advised(Prediction(29).RecommendedGracePeriod);

        time.Advance(TimeSpan.FromSeconds(10));

        Assert.Equal(TimeSpan.FromSeconds(20), advice.Due(new PodCost(Grace, Prediction(60), 3, Committed), Margin));
    }

    [Fact]
    public void Advice_FlushFits_NothingToSay_AndALaterShortfallIsNewsAgain()
    {
        var time = new FakeTimeProvider();
        var advice = new GracePeriodAdvice(Interval, time);
        var fits = new PodCost(Grace, Prediction(27.9), 3, Committed); // 27.9 s < 30 s - 2 s
        var tooShort = new PodCost(Grace, Prediction(28.1), 3, Committed);

        Assert.Null(advice.Due(fits, Margin));
        Assert.Null(advice.Due(fits with { Prediction = null }, Margin));
        Assert.Equal(TimeSpan.Zero, advice.Due(tooShort, Margin));
        advice.Attempted();
        advice.Advised(tooShort.Prediction!.RecommendedGracePeriod);
        time.Advance(Interval);
        Assert.Null(advice.Due(fits, Margin));
        Assert.Equal(TimeSpan.Zero, advice.Due(tooShort, Margin));
    }

    [Fact]
    public void Advice_EventFailed_RetriedAfterAnInterval()
    {
        var time = new FakeTimeProvider();
        var advice = new GracePeriodAdvice(Interval, time);
        var tooShort = new PodCost(Grace, Prediction(29), 3, Committed);
        advice.Due(tooShort, Margin);
        advice.Attempted(); // and the API answered 403: never Advised

        Assert.Equal(Interval, advice.Due(tooShort, Margin));
        time.Advance(Interval);
        Assert.Equal(TimeSpan.Zero, advice.Due(tooShort, Margin));
    }

    /// <summary>A planner's prediction after one measured flush taking <paramref name="seconds"/> in all.</summary>
    private static FlushPrediction Prediction(double seconds, double graceSeconds = 30)
    {
        var planner = new FlushPlanner(TimeSpan.FromSeconds(graceSeconds), Margin);
        var dump = TimeSpan.FromSeconds(seconds);
        planner.RecordFlush(new FlushTimings(
            "step-1", CheckpointReason.Periodic, TimeSpan.Zero, dump, TimeSpan.Zero, TimeSpan.Zero, TimeSpan.Zero, dump,
            TimeSpan.FromSeconds(graceSeconds), 0));
        return planner.Predict()!;
    }
}
