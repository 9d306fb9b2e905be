using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Reporting;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// Before the socket accepts calls: the job directory exists and whatever a killed predecessor left
/// half-written is swept, and the previous pod's last flush (from its record on the shared storage)
/// is exported as this job's last flush and feeds the prediction. Once the server listens: the
/// socket is put in place with its permissions and /readyz turns ready; when it stops, the socket goes.
/// </summary>
internal sealed class StartupTasks(
    CheckpointStore store,
    FlushRecordStore records,
    CheckpointMetrics metrics,
    IOptions<SidecarOptions> options,
    FlushPlanner planner,
    SocketFile socket,
    IHostApplicationLifetime lifetime,
    ILogger<StartupTasks> logger) : IHostedService
{
    private volatile bool _ready;

    public bool IsReady => _ready;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        store.EnsureJobDirectory();
        store.SweepLeftovers();
        RestoreLastFlush();
        lifetime.ApplicationStarted.Register(OnListening);
        lifetime.ApplicationStopped.Register(socket.Remove);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void RestoreLastFlush()
    {
        if (records.ReadLatest() is not { } record)
        {
            return;
        }

        var timings = FlushRecordReporter.ToTimings(record);
        if (timings is not null)
        {
            planner.RecordFlush(timings);
            metrics.RestoreLastFlush(timings, record.DeadlineMissed);
        }
        else
        {
            metrics.RecordLastFlushDeadlineMissed(record.DeadlineMissed);
        }

        ReportingLog.Restored(logger, record.CheckpointId, record.Reason, record.Outcome, record.Pod, timings?.BudgetUsedRatio ?? double.NaN);
    }

    private void OnListening()
    {
        var settings = options.Value;
        // Only the trainer container's user (same group through fsGroup) may talk to the sidecar.
        socket.Publish();
        _ready = true;
        HostingLog.Ready(logger, settings.SocketPath, settings.MetricsPort, store.Layout.JobDirectory, planner.GracePeriod.TotalSeconds);
    }
}
