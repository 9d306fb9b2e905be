namespace Checkpoint.TrainerSdk;

/// <summary>Why a checkpoint is taken.</summary>
public enum CheckpointReason
{
    /// <summary>The sidecar did not say; only seen when talking to an older or newer sidecar.</summary>
    Unspecified = 0,

    /// <summary>
    /// The pod, or in a job of many pods any pod of the job, is being terminated; the dump must be committed before
    /// <see cref="DumpRequest.Deadline"/>.
    /// </summary>
    Preemption = 1,

    /// <summary>Asked for by the trainer on a schedule, for example every N steps.</summary>
    Periodic = 2,

    /// <summary>Asked for by the trainer for another reason, for example the end of an epoch.</summary>
    Manual = 3,
}
