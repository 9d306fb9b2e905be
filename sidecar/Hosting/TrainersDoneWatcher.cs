using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// With CHECKPOINT_EXIT_WHEN_TRAINERS_DONE: a regular sidecar container otherwise runs until SIGTERM,
/// and a batch Job whose trainer has finished never completes. Once trainers have attached and all
/// have gone, and every checkpoint they handed over has been persisted, the sidecar exits 0.
/// Native sidecars (Kubernetes 1.29+) do not need this: Kubernetes stops them after the trainer.
/// With CHECKPOINT_FIRST_TRAINER_TIMEOUT_SECONDS (600 s by default with the above): a trainer that
/// never attaches would leave the sidecar waiting, and the pod running, for ever; the sidecar gives
/// up, says what to check, and exits <see cref="NoTrainerExitCode"/> so the pod fails visibly.
/// </summary>
internal sealed class TrainersDoneWatcher(
    IOptions<SidecarOptions> options,
    FlushCoordinator coordinator,
    IHostApplicationLifetime lifetime,
    TimeProvider time,
    ILogger<TrainersDoneWatcher> logger) : BackgroundService
{
    /// <summary>Apart from 1 (a flush failed) and 2 (bad configuration): nothing was ever flushed, nothing was lost.</summary>
    public const int NoTrainerExitCode = 3;

    private DateTimeOffset _startedAt;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // ExecuteAsync runs on the thread pool, whenever it gets there: the wait counts from the host's start.
        _startedAt = time.GetUtcNow();
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        var firstTrainerTimeout = settings.FirstTrainerTimeout;
        if (!settings.ExitWhenTrainersDone && firstTrainerTimeout == TimeSpan.Zero)
        {
            return;
        }

        if (!await FirstTrainerAttachedAsync(firstTrainerTimeout, stoppingToken).ConfigureAwait(false) || !settings.ExitWhenTrainersDone)
        {
            return;
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            await coordinator.NoTrainersAttached.WaitAsync(stoppingToken).ConfigureAwait(false);
            await coordinator.CheckpointsSettled().WaitAsync(stoppingToken).ConfigureAwait(false);
            await coordinator.ReportsDrained.WaitAsync(stoppingToken).ConfigureAwait(false);

            // A trainer that restarted and attached again meanwhile keeps the sidecar running.
            if (coordinator.NoTrainersAttached.IsCompleted && !coordinator.IsTerminating)
            {
                HostingLog.TrainersDone(logger);
                lifetime.StopApplication();
                return;
            }

            if (coordinator.IsTerminating)
            {
                // The termination path owns the exit.
                return;
            }
        }
    }

    /// <summary>False when the sidecar gave up waiting (and is stopping).</summary>
    private async Task<bool> FirstTrainerAttachedAsync(TimeSpan timeout, CancellationToken stoppingToken)
    {
        var firstAttached = coordinator.FirstAttached;
        if (timeout == TimeSpan.Zero)
        {
            await firstAttached.WaitAsync(stoppingToken).ConfigureAwait(false);
            return true;
        }

        try
        {
            var left = _startedAt + timeout - time.GetUtcNow();
            await firstAttached.WaitAsync(left > TimeSpan.Zero ? left : TimeSpan.Zero, time, stoppingToken).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException) when (firstAttached.IsCompleted)
        {
            // The trainer attached as the timer fired (its completion was still queued for the thread
            // pool): it is attached, the sidecar does not give up on it.
            return true;
        }
        catch (TimeoutException)
        {
            if (coordinator.IsTerminating)
            {
                // The termination path owns the exit.
                return false;
            }

            var settings = options.Value;
            var seconds = timeout.TotalSeconds;
            HostingLog.NoTrainerAttached(logger, seconds, settings.SocketPath, NoTrainerExitCode);
            Environment.ExitCode = NoTrainerExitCode;
            lifetime.StopApplication();
            return false;
        }
    }
}
