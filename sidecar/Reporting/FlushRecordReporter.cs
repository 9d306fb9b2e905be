using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Reporting;

/// <summary>Writes every ended flush to the job's flush records on the shared storage.</summary>
internal sealed class FlushRecordReporter(FlushRecordStore records, IOptions<SidecarOptions> options) : IFlushReporter
{
    public Task PreemptionStartedAsync(PreemptionStarted started, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task FlushEndedAsync(FlushReport report, CancellationToken cancellationToken)
    {
        records.Write(ToRecord(report, options.Value.PodNameOrHost));
        return Task.CompletedTask;
    }

    public static FlushRecord ToRecord(FlushReport report, string pod)
    {
        var outcome = report.Outcome;
        var t = outcome.Timings;
        return new FlushRecord
        {
            CheckpointId = outcome.CheckpointId,
            Pod = pod,
            Reason = report.Reason.ToLabel(),
            Cause = report.Cause,
            Outcome = outcome.Status == CheckpointStatus.Committed ? "committed" : "failed",
            FailureCause = outcome.FailureCause?.ToLabel(),
            Error = outcome.Error,
            Step = outcome.Step,
            TriggeredAt = report.TriggeredAt,
            EndedAt = report.EndedAt,
            GracePeriodSeconds = report.GracePeriod.TotalSeconds,
            DeadlineMissed = report.DeadlineMissed,
            MissingRanks = outcome.MissingRanks.Count > 0 ? outcome.MissingRanks : null,
            Timings = t is null ? null : new FlushRecordTimings(
                t.Notify.TotalSeconds, t.Dump.TotalSeconds, t.Copy.TotalSeconds, t.Verify.TotalSeconds, t.Commit.TotalSeconds,
                t.Total.TotalSeconds, t.BudgetUsedRatio, t.Bytes, t.CommitWait.TotalSeconds, t.ReadBackBytes),
            Drill = report.Drill ? true : null,
        };
    }

    /// <summary>The timings of a committed flush from its record, for the next sidecar of the job.</summary>
    public static FlushTimings? ToTimings(FlushRecord record)
    {
        if (record.Timings is not { } t || CheckpointReasonNames.FromLabel(record.Reason) is not { } reason)
        {
            return null;
        }

        return new FlushTimings(record.CheckpointId, reason,
            TimeSpan.FromSeconds(t.NotifySeconds), TimeSpan.FromSeconds(t.DumpSeconds), TimeSpan.FromSeconds(t.CopySeconds),
            TimeSpan.FromSeconds(t.VerifySeconds), TimeSpan.FromSeconds(t.CommitSeconds), TimeSpan.FromSeconds(t.TotalSeconds),
            TimeSpan.FromSeconds(record.GracePeriodSeconds), t.Bytes, TimeSpan.FromSeconds(t.CommitWaitSeconds),
            t.ReadBackBytes is { } readBack && readBack >= 0 && readBack <= t.Bytes ? readBack : null);
    }
}
