using Google.Protobuf.WellKnownTypes;
using Proto = Checkpoint.Protos.V1;

namespace Checkpoint.TrainerSdk.Internal;

/// <summary>Turns generated contract types into the SDK's own, so the contract can evolve without breaking trainers.</summary>
internal static class ProtoMapping
{
    public static DumpRequest ToDumpRequest(Proto.DumpRequest dump) => new(
        dump.CheckpointId,
        ToReason(dump.Reason),
        dump.Deadline?.ToDateTimeOffset(),
        dump.StagingDir)
    {
        Drill = dump.Drill,
    };

    public static CheckpointReason ToReason(Proto.CheckpointReason reason) => reason switch
    {
        Proto.CheckpointReason.Preemption => CheckpointReason.Preemption,
        Proto.CheckpointReason.Periodic => CheckpointReason.Periodic,
        Proto.CheckpointReason.Manual => CheckpointReason.Manual,
        _ => CheckpointReason.Unspecified,
    };

    public static Proto.CheckpointReason ToProto(CheckpointReason reason) => reason switch
    {
        CheckpointReason.Preemption => Proto.CheckpointReason.Preemption,
        CheckpointReason.Periodic => Proto.CheckpointReason.Periodic,
        CheckpointReason.Manual => Proto.CheckpointReason.Manual,
        _ => Proto.CheckpointReason.Unspecified,
    };

    public static CheckpointOutcome ToOutcome(Proto.CheckpointOutcome outcome) => new(
        outcome.CheckpointId,
        outcome.Status switch
        {
            Proto.CheckpointStatus.Committed => CheckpointStatus.Committed,
            Proto.CheckpointStatus.Failed => CheckpointStatus.Failed,
            Proto.CheckpointStatus.Superseded => CheckpointStatus.Superseded,
            _ => CheckpointStatus.Unspecified,
        },
        outcome.Directory,
        outcome.Step,
        string.IsNullOrEmpty(outcome.Error) ? null : outcome.Error,
        outcome.Timings is null ? null : ToTimings(outcome.Timings))
    {
        MissingRanks = [.. outcome.MissingRanks],
        RecommendedInterval = outcome.RecommendedInterval?.ToTimeSpan(),
    };

    public static LatestCheckpoint ToLatest(Proto.CheckpointInfo info) => new(
        info.CheckpointId,
        info.Directory,
        info.Step,
        ToReason(info.Reason),
        info.Created?.ToDateTimeOffset(),
        new Dictionary<string, string>(info.Metadata, StringComparer.Ordinal),
        info.TotalBytes)
    {
        WorldSize = info.WorldSize,
    };

    public static SidecarStatus ToStatus(Proto.GetStatusResponse status) => new(
        ToTimeSpan(status.GracePeriod),
        status.Trainers.Select(t => new AttachedTrainer(string.Empty, t.Rank, t.Description)).ToList(),
        status.Terminating,
        string.IsNullOrEmpty(status.LastCommittedCheckpointId) ? null : status.LastCommittedCheckpointId,
        status.LastFlush is null ? null : ToTimings(status.LastFlush));

    public static TimeSpan ToTimeSpan(Duration? duration) => duration?.ToTimeSpan() ?? TimeSpan.Zero;

    private static CheckpointTimings ToTimings(Proto.FlushTimings timings) => new(
        timings.CheckpointId,
        ToReason(timings.Reason),
        ToTimeSpan(timings.Notify),
        ToTimeSpan(timings.Dump),
        ToTimeSpan(timings.Copy),
        ToTimeSpan(timings.Verify),
        ToTimeSpan(timings.Commit),
        ToTimeSpan(timings.Total),
        ToTimeSpan(timings.Budget),
        timings.BudgetUsedRatio,
        timings.Bytes)
    {
        CommitWait = ToTimeSpan(timings.CommitWait),
    };
}
