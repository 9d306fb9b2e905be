using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Hosting;

internal static partial class HostingLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Checkpoint sidecar ready: gRPC on unix:{SocketPath}, metrics on http://*:{MetricsPort}/metrics, checkpoints in {JobDirectory}, grace period {GraceSeconds} s")]
    public static partial void Ready(ILogger logger, string socketPath, int metricsPort, string jobDirectory, double graceSeconds);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "{Signal} received: starting the preemption flush")]
    public static partial void SignalReceived(ILogger logger, string signal);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Stopping after the preemption flush: {Outcome}")]
    public static partial void Stopping(ILogger logger, string outcome);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Every trainer has detached and its checkpoints are persisted: exiting (CHECKPOINT_EXIT_WHEN_TRAINERS_DONE)")]
    public static partial void TrainersDone(ILogger logger);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Removed stale socket file {SocketPath}")]
    public static partial void StaleSocketRemoved(ILogger logger, string socketPath);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "Could not {Task} at start: {Problem}; starting anyway")]
    public static partial void HousekeepingFailed(ILogger logger, string task, string problem);

    [LoggerMessage(EventId = 7, Level = LogLevel.Critical, Message = "SIGTERM could not start the preemption flush ({ExceptionType}: {Detail}); stopping with exit code 1")]
    public static partial void TerminationFailed(ILogger logger, string exceptionType, string detail);

    [LoggerMessage(EventId = 8, Level = LogLevel.Error, Message = "No trainer attached within {TimeoutSeconds} s of start (CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS): exiting with code {ExitCode} so the pod fails instead of running for ever. Check that the trainer container is running and uses the checkpoint SDK, that it reaches the socket at {SocketPath} (the same volume mounted in both containers, and CHECKPOINT_SOCKET_PATH the same in both), and the trainer's log for an error before it connected")]
    public static partial void NoTrainerAttached(ILogger logger, double timeoutSeconds, string socketPath, int exitCode);
}
