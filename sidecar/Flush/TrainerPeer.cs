namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// The process on the other end of a call. A trainer id is honoured only from the process that
/// attached it: an id another process read (from a log, from a guess) does not make it that trainer.
/// </summary>
/// <param name="ProcessId">
/// The peer's pid (SO_PEERCRED), or null when the sidecar cannot see it: containers of a pod have
/// separate pid namespaces unless the pod sets shareProcessNamespace, and the kernel then reports 0.
/// </param>
/// <param name="ConnectionId">The connection the call came on; stands for the process when its pid is not visible.</param>
public sealed record TrainerPeer(int? ProcessId, string ConnectionId)
{
    public bool IsSameProcessAs(TrainerPeer other) =>
        ProcessId is { } pid && other.ProcessId is { } otherPid ? pid == otherPid : ConnectionId == other.ConnectionId;
}
