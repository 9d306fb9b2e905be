using Checkpoint.TrainerSdk.Internal;
using Google.Protobuf.WellKnownTypes;
using Proto = Checkpoint.Protos.V1;

namespace Checkpoint.TrainerSdk;

// Job-wide checkpoints: a job of many pods (CheckpointClientOptions.WorldSize) commits a checkpoint only when every rank of
// the world has a sealed shard. When one pod is preempted the whole job stops, so every rank of every pod must dump at the
// same step before the preempted pod's deadline. Only the preempted pod's sidecar pushes a dump request; the ranks learn of
// it through their own collective and each asks its own sidecar to join.
public sealed partial class CheckpointClient
{
    /// <summary>
    /// Asks this pod's sidecar for the job-wide preemption checkpoint at <paramref name="step"/>: a pod of the job is being
    /// preempted, every rank of the world agreed to dump at that step, and <paramref name="deadline"/> is the earliest
    /// deadline any preempted pod announced. A sidecar that is not being preempted itself treats it as a preemption
    /// checkpoint (never superseded by a periodic one); one that is being preempted joins its own preemption checkpoint.
    /// Write the files under <see cref="DumpRequest.RankDirectory"/> of the answer, then call <see cref="SubmitDumpAsync"/>
    /// (or <see cref="CompleteDumpAsync"/>).
    /// </summary>
    /// <remarks>
    /// <para>
    /// .NET has no torch.distributed, so the SDK cannot agree with the other ranks for you; the trainer's own collective
    /// (the one its training already uses, for example an all-reduce over MPI or NCCL) must. At each step boundary every
    /// rank contributes whether it holds a preemption dump (<see cref="PendingDump"/> with
    /// <see cref="CheckpointReason.Preemption"/>) and, if so, that dump's <see cref="DumpRequest.Deadline"/>, for example as
    /// <see cref="DateTimeOffset.UtcTicks"/> with <see cref="long.MaxValue"/> for none, reduced to the minimum. If the
    /// minimum is not <see cref="long.MaxValue"/>, every rank (the preempted pod's included) calls this method with the
    /// step every rank is at and that earliest deadline. Do not share the time the rank itself received SIGTERM, nor a
    /// deadline worked out from the grace period: the preempted pod's sidecar already took its safety margin off
    /// <see cref="DumpRequest.Deadline"/>.
    /// </para>
    /// <para>
    /// The answer is a preemption dump, so the rest goes as for one the sidecar pushed: <see cref="TerminationRequested"/>
    /// turns true and, with <see cref="CheckpointClientOptions.HandleTermination"/> set, the process ends with
    /// <see cref="CheckpointClientOptions.PreemptionExitCode"/> once the checkpoint has an outcome (see
    /// <see cref="SubmitDumpAsync"/>) or when the deadline passes before it is committed. The job is restarted as a whole
    /// and every rank resumes from the newest checkpoint that every rank's shard made it into.
    /// </para>
    /// </remarks>
    /// <param name="step">The training step every rank of the world agreed to dump.</param>
    /// <param name="deadline">The earliest deadline of the preempted pods' preemption dumps: when the job-wide checkpoint must be committed.</param>
    /// <param name="cancellationToken">Abandons the call.</param>
    /// <returns>Where to write this rank's files; its <see cref="DumpRequest.Reason"/> is <see cref="CheckpointReason.Preemption"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="deadline"/> is the default value (no deadline was given).</exception>
    /// <exception cref="CheckpointException">
    /// The sidecar refused (<see cref="CheckpointErrorCode.InvalidArgument"/> from a sidecar that predates job-wide
    /// checkpoints) or could not be reached; <see cref="CheckpointErrorCode.Unavailable"/> at once while the client is
    /// detached (see <see cref="IsAttached"/>).
    /// </exception>
    public async Task<DumpRequest> BeginJobPreemptionCheckpointAsync(long step, DateTimeOffset deadline, CancellationToken cancellationToken = default)
    {
        if (deadline == default)
        {
            throw new ArgumentException(
                "A job-wide preemption checkpoint needs the deadline the preempted pod's sidecar announced (its DumpRequest.Deadline), " +
                "agreed on by every rank; none was given.",
                nameof(deadline));
        }

        var request = new Proto.BeginCheckpointRequest
        {
            TrainerId = AttachedTrainerId("BeginCheckpoint"),
            Step = step,
            Reason = Proto.CheckpointReason.Preemption,
            Deadline = Timestamp.FromDateTimeOffset(deadline),
        };
        var response = await CallAsync(
            "BeginCheckpoint",
            token => sidecar.BeginCheckpointAsync(request, cancellationToken: token),
            cancellationToken).ConfigureAwait(false);
        if (response.Dump is null)
        {
            throw new CheckpointException(
                $"The checkpoint sidecar answered BeginCheckpoint (job-wide preemption) for step {step} without a dump descriptor.",
                CheckpointErrorCode.Internal);
        }

        var dump = ProtoMapping.ToDumpRequest(response.Dump);
        string answered = dump.Deadline is { } at && at != deadline ? $", the sidecar's deadline {at:O}" : string.Empty;
        Log($"joining job-wide preemption checkpoint {dump.CheckpointId} at step {step}, deadline {deadline:O}{answered}, into {dump.StagingDirectory}");
        OnJobPreemptionJoined(deadline, dump.Deadline);
        return dump;
    }

    // The job is stopping: periodic checkpoints are pointless from now on, and this rank must not outlive the deadline.
    private void OnJobPreemptionJoined(DateTimeOffset agreedDeadline, DateTimeOffset? answeredDeadline)
    {
        Volatile.Write(ref preemptionDumpSeen, 1);
        if (options.HandleTermination)
        {
            // The earlier of the two: the watchdog only ever moves earlier.
            ArmWatchdog(agreedDeadline);
            if (answeredDeadline is { } answered)
            {
                ArmWatchdog(answered);
            }
        }
    }
}
