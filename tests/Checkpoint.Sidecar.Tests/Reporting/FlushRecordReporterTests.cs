using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Reporting;

namespace Checkpoint.Sidecar.Tests.Reporting;

public sealed class FlushRecordReporterTests
{
    private static readonly DateTimeOffset Triggered = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void ToRecord_JobWideFailure_NamesTheMissingRanks()
    {
        var outcome = new CheckpointOutcome("id-1", CheckpointStatus.Failed, null, 5, "rank(s) 1-2 had no shard", FlushFailureCause.JobIncomplete, null)
        {
            MissingRanks = [1, 2],
        };

        var record = FlushRecordReporter.ToRecord(Report(outcome), "pod-a");

        Assert.Equal("job_incomplete", record.FailureCause);
        Assert.Equal([1, 2], record.MissingRanks);
        Assert.Null(record.FindImplausible());
    }

    [Fact]
    public void ToRecord_Committed_KeepsTheCommitWait_AndTheNextSidecarReadsItBack()
    {
        var timings = new FlushTimings("id-1", CheckpointReason.Preemption, TimeSpan.FromSeconds(0.1), TimeSpan.FromSeconds(1),
            TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(6.6), TimeSpan.FromSeconds(30), 1 << 20,
            CommitWait: TimeSpan.FromSeconds(2.75));
        var outcome = new CheckpointOutcome("id-1", CheckpointStatus.Committed, "/storage/step-000000005/pod-a_0a1b2c3d", 5, null, null, timings);

        var record = FlushRecordReporter.ToRecord(Report(outcome), "pod-a");

        Assert.Null(record.MissingRanks);
        Assert.Equal(2.75, record.Timings!.CommitWaitSeconds);
        Assert.Equal(TimeSpan.FromSeconds(2.75), FlushRecordReporter.ToTimings(record)!.CommitWait);
    }

    [Theory]
    [InlineData(1024L, 1024L)]
    [InlineData(null, null)]
    [InlineData(-1L, null)]
    [InlineData(1L << 30, null)]
    public void ToRecord_ReadBackBytes_TheNextSidecarReadsThemBackWhenPlausible(long? written, long? readBack)
    {
        var timings = new FlushTimings("id-1", CheckpointReason.Preemption, TimeSpan.Zero, TimeSpan.Zero,
            TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(0.5), TimeSpan.Zero, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(30), 1 << 20,
            ReadBackBytes: written);
        var outcome = new CheckpointOutcome("id-1", CheckpointStatus.Committed, "/storage/step-000000005/pod-a_0a1b2c3d", 5, null, null, timings);

        var record = FlushRecordReporter.ToRecord(Report(outcome), "pod-a");

        Assert.Equal(written, record.Timings!.ReadBackBytes);
        Assert.Equal(readBack, FlushRecordReporter.ToTimings(record)!.ReadBackBytes);
    }

    private static FlushReport Report(CheckpointOutcome outcome) =>
        new(outcome, CheckpointReason.Preemption, "Signal", TimeSpan.FromSeconds(30), Triggered, Triggered.AddSeconds(7));
}
