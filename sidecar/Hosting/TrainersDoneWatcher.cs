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
/// </summary>
internal sealed class TrainersDoneWatcher(
    IOptions<SidecarOptions> options,
    FlushCoordinator coordinator,
    IHostApplicationLifetime lifetime,
    ILogger<TrainersDoneWatcher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.ExitWhenTrainersDone)
        {
            return;
        }

        await coordinator.FirstAttached.WaitAsync(stoppingToken).ConfigureAwait(false);
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
}
