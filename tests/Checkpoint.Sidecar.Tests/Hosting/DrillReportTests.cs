using Checkpoint.Sidecar.Hosting;

namespace Checkpoint.Sidecar.Tests.Hosting;

public sealed class DrillReportTests
{
    private static readonly DateTimeOffset Triggered = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    [Fact]
    public void Committed_WithinBudget_FitsWithTheMarginLeft()
    {
        // G 30 s, margin 2 s: budget 28 s; 7 s used leaves 21 s, a quarter of the budget.
        var report = DrillReport.From("c1", "committed", 42, null, TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2),
            Triggered, Triggered.AddSeconds(28), TimeSpan.FromSeconds(7),
            [("notify", TimeSpan.FromSeconds(0.5)), ("dump", TimeSpan.FromSeconds(3.5)), ("copy", TimeSpan.FromSeconds(2)),
             ("verify", TimeSpan.FromSeconds(0.7)), ("commit", TimeSpan.FromSeconds(0.3))], 1000);

        Assert.True(report.Fits);
        Assert.Equal(28, report.BudgetSeconds, 9);
        Assert.Equal(21, report.MarginSeconds, 9);
        Assert.Equal(0.25, report.BudgetUsedRatio, 9);
        Assert.Equal(0.125, report.Phases.Single(p => p.Name == "dump").BudgetShare, 9);
        Assert.Contains("would fit", report.ToText(), StringComparison.Ordinal);
        Assert.Contains("  margin    21.000 s", report.ToText(), StringComparison.Ordinal);
    }

    [Fact]
    public void Committed_PastTheDeadline_DoesNotFit()
    {
        var report = DrillReport.From("c1", "committed", 1, null, TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(1),
            Triggered, Triggered.AddSeconds(14), TimeSpan.FromSeconds(14.5), [], null);

        Assert.False(report.Fits);
        Assert.Equal(-0.5, report.MarginSeconds, 9);
        Assert.Contains("would NOT fit in 15 s grace", report.ToText(), StringComparison.Ordinal);
    }

    [Fact]
    public void Failed_NeverFits_EvenWithTimeLeft()
    {
        var report = DrillReport.From("c1", "failed", null, "rank 0 detached", TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2),
            Triggered, Triggered.AddSeconds(28), TimeSpan.FromSeconds(3), [], null);

        Assert.False(report.Fits);
        Assert.Equal(25, report.MarginSeconds, 9);
        Assert.StartsWith("preemption drill c1: failed: rank 0 detached", report.ToText(), StringComparison.Ordinal);
    }

    [Fact]
    public void NoBudget_RatioIsInfinite_AndDoesNotFit()
    {
        // G no larger than the safety margin: a real preemption has no time at all.
        var report = DrillReport.From("c1", "committed", 1, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1),
            Triggered, Triggered, TimeSpan.FromSeconds(0.2), [("dump", TimeSpan.FromSeconds(0.1))], 10);

        Assert.False(report.Fits);
        Assert.True(double.IsPositiveInfinity(report.BudgetUsedRatio));
    }
}
