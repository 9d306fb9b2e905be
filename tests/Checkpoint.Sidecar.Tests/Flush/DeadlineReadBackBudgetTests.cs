using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Time.Testing;

namespace Checkpoint.Sidecar.Tests.Flush;

/// <summary>
/// Which files of a flush with a deadline are read back: all of them while the rest of the copy and
/// the read-backs owed fit before the deadline, none that would not; the time is a fake one.
/// </summary>
public sealed class DeadlineReadBackBudgetTests
{
    private const long MB = 1_000_000;
    private static readonly DateTimeOffset Start = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan NoAllowance = TimeSpan.Zero;

    private readonly FakeTimeProvider _time = new(Start);

    /// <summary>Copy at 100 MB/s and read back at 50 MB/s, as measured by an earlier flush.</summary>
    private static FlushPlanner Measured()
    {
        var planner = new FlushPlanner(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2));
        planner.RecordThroughput(100 * MB, copy: TimeSpan.FromSeconds(1), verify: TimeSpan.FromSeconds(2));
        return planner;
    }

    private static ManifestFile File(long size, string path = "rank-0/model.bin") => new(path, size, new string('0', 32));

    [Fact]
    public void Fits_ReadsBack()
    {
        // Nothing left to copy; 100 MB read back at 50 MB/s: 2 s of the 10 s left.
        var budget = new DeadlineReadBackBudget(Measured(), Start + TimeSpan.FromSeconds(10), 100 * MB, _time, NoAllowance);

        Assert.True(budget.ShouldReadBack(File(100 * MB), bytesStillToCopy: 0));
        Assert.Equal(0, budget.WriteHashFiles);
    }

    [Fact]
    public void DoesNotFit_CommitsOnTheWriteHash()
    {
        // 2 s of read-back with 1.5 s left.
        var budget = new DeadlineReadBackBudget(Measured(), Start + TimeSpan.FromSeconds(1.5), 100 * MB, _time, NoAllowance);

        Assert.False(budget.ShouldReadBack(File(100 * MB), bytesStillToCopy: 0));
        Assert.Equal(1, budget.WriteHashFiles);
        Assert.Equal(100 * MB, budget.WriteHashBytes);
    }

    [Fact]
    public void RemainingCopy_CountsAgainstTheDeadline()
    {
        // The read-back alone (0.2 s) fits in 2 s, but 200 MB still to copy take another 2 s.
        var budget = new DeadlineReadBackBudget(Measured(), Start + TimeSpan.FromSeconds(2), 210 * MB, _time, NoAllowance);

        Assert.False(budget.ShouldReadBack(File(10 * MB), bytesStillToCopy: 200 * MB));
    }

    [Fact]
    public void CommitAllowance_CountsAgainstTheDeadline()
    {
        var deadline = Start + TimeSpan.FromSeconds(2.5);

        Assert.True(new DeadlineReadBackBudget(Measured(), deadline, 100 * MB, _time, NoAllowance).ShouldReadBack(File(100 * MB), 0));
        Assert.False(new DeadlineReadBackBudget(Measured(), deadline, 100 * MB, _time, TimeSpan.FromSeconds(1)).ShouldReadBack(File(100 * MB), 0));
    }

    [Fact]
    public void NoMeasurement_ReadsBack()
    {
        // Nothing measured before, and nothing copied yet in the fake time that has not moved.
        var planner = new FlushPlanner(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2));
        var budget = new DeadlineReadBackBudget(planner, Start, 100 * MB, _time, NoAllowance);

        Assert.True(budget.ShouldReadBack(File(100 * MB), bytesStillToCopy: 0));
    }

    [Fact]
    public void NoMeasurement_ThisFlushsCopyRateDecides()
    {
        // Nothing measured before; 100 MB copied in 1 s, and read back at that rate too: 1 s, which
        // does not fit in the 0.5 s left of one deadline and fits in the 9 s of the other.
        var planner = new FlushPlanner(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2));
        var tight = new DeadlineReadBackBudget(planner, Start + TimeSpan.FromSeconds(1.5), 100 * MB, _time, NoAllowance);
        var ample = new DeadlineReadBackBudget(planner, Start + TimeSpan.FromSeconds(10), 100 * MB, _time, NoAllowance);
        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.False(tight.ShouldReadBack(File(100 * MB), bytesStillToCopy: 0));
        Assert.True(ample.ShouldReadBack(File(100 * MB), bytesStillToCopy: 0));
    }

    [Fact]
    public void SlowerCopyThanMeasured_TheSlowerRateDecides()
    {
        // Measured 100 MB/s, but this flush copied 10 MB in 1 s: 90 MB left take 9 s, not 0.9 s.
        var budget = new DeadlineReadBackBudget(Measured(), Start + TimeSpan.FromSeconds(5), 100 * MB, _time, NoAllowance);
        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.False(budget.ShouldReadBack(File(1 * MB), bytesStillToCopy: 90 * MB));
    }

    [Fact]
    public void FileAfterOthers_NoLongerFits()
    {
        // 2.5 s left; each 50 MB file is 1 s of read-back at 50 MB/s: two fit, the third does not.
        var budget = new DeadlineReadBackBudget(Measured(), Start + TimeSpan.FromSeconds(2.5), 150 * MB, _time, NoAllowance);

        Assert.True(budget.ShouldReadBack(File(50 * MB, "a"), bytesStillToCopy: 0));
        Assert.True(budget.ShouldReadBack(File(50 * MB, "b"), bytesStillToCopy: 0));
        Assert.False(budget.ShouldReadBack(File(50 * MB, "c"), bytesStillToCopy: 0));
        Assert.Equal(2, budget.ReadBackFiles);
        Assert.Equal(1, budget.WriteHashFiles);
    }

    [Fact]
    public void OwedReadBacks_DrainAsTimePasses()
    {
        // The first 100 MB (2 s of read-back) is done by the time the second file is copied 2 s later.
        var budget = new DeadlineReadBackBudget(Measured(), Start + TimeSpan.FromSeconds(4.5), 200 * MB, _time, NoAllowance);

        Assert.True(budget.ShouldReadBack(File(100 * MB, "a"), bytesStillToCopy: 100 * MB));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(budget.ShouldReadBack(File(100 * MB, "b"), bytesStillToCopy: 0));
    }

    [Fact]
    public void DeadlinePassed_CommitsOnTheWriteHash()
    {
        var budget = new DeadlineReadBackBudget(Measured(), Start, 1, _time, NoAllowance);
        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.False(budget.ShouldReadBack(File(1), bytesStillToCopy: 0));
    }

    [Fact]
    public void For_NoDeadline_ReadsEverythingBack()
    {
        var budget = DeadlineReadBackBudget.For(new SidecarOptions(), deadline: null, Measured(), 100 * MB, _time);

        Assert.Same(ReadBackBudget.All, budget);
    }

    [Fact]
    public void For_Deadline_IsTheDeadlineBudget()
    {
        var budget = DeadlineReadBackBudget.For(new SidecarOptions(), Start, Measured(), 100 * MB, _time);

        Assert.IsType<DeadlineReadBackBudget>(budget);
        Assert.False(budget.ShouldReadBack(File(100 * MB), 0));
    }

    [Theory]
    [InlineData(SidecarOptions.VerifyReadBackAlways, true)]
    [InlineData(SidecarOptions.VerifyWriteHash, false)]
    public void For_FixedModes_IgnoreTheDeadline(string mode, bool readBack)
    {
        var budget = DeadlineReadBackBudget.For(new SidecarOptions { Verify = mode }, Start, Measured(), 100 * MB, _time);

        Assert.Equal(readBack, budget.ShouldReadBack(File(100 * MB), 0));
    }

    [Fact]
    public void Planner_PartialReadBack_OnlyReadBackBytesMeasureTheReadBack()
    {
        // A flush that read back 10 MB of 100 MB in its 1 s verify phase says 10 MB/s, not 100 MB/s;
        // one that read back nothing says nothing.
        var planner = new FlushPlanner(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2));
        planner.RecordThroughput(100 * MB, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1), readBackBytes: 0);
        Assert.Null(planner.Throughputs.ReadBack);

        planner.RecordThroughput(100 * MB, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1), readBackBytes: 10 * MB);
        Assert.Equal(10e6, planner.Throughputs.ReadBack);
        Assert.Equal(100e6, planner.Throughputs.Copy);
    }
}
