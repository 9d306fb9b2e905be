using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Reporting;
using Checkpoint.Sidecar.Storage;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// Before the socket accepts calls: the job directory exists, whatever a killed predecessor left
/// half-written is swept (on storage and in staging), and the previous pod's last flush (from its
/// record on the shared storage) is exported as this job's last flush and feeds the prediction. Once
/// the server listens: the socket is put in place with its permissions and /readyz turns ready; when
/// it stops, the socket goes.
/// </summary>
/// <remarks>
/// The sweep and the restore are best effort: what another pod, job or person left on the shared
/// storage is logged and passed over, and never keeps the sidecar from serving.
/// </remarks>
internal sealed class StartupTasks(
    CheckpointStore store,
    StagingRoot staging,
    FlushRecordStore records,
    CheckpointMetrics metrics,
    IOptions<SidecarOptions> options,
    FlushPlanner planner,
    SocketFile socket,
    IHostApplicationLifetime lifetime,
    IServer server,
    ILogger<StartupTasks> logger) : IHostedService
{
    private volatile bool _ready;

    public bool IsReady => _ready;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        store.EnsureJobDirectory();
        BestEffort("sweep what interrupted flushes left", () => store.SweepLeftovers());
        // A sidecar killed with SIGKILL never removed its checkpoints' staging directories; nothing
        // else ever will, and each may hold a full dump.
        BestEffort("sweep the staging a killed sidecar left", () => staging.SweepLeftovers());
        BestEffort("restore the previous flush from its record", RestoreLastFlush);
        lifetime.ApplicationStarted.Register(OnListening);
        lifetime.ApplicationStopped.Register(socket.Remove);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void BestEffort(string task, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            HostingLog.HousekeepingFailed(logger, task, StorageErrors.Describe(e));
        }
    }

    private void RestoreLastFlush()
    {
        if (records.ReadLatest() is not { } record)
        {
            return;
        }

        var timings = FlushRecordReporter.ToTimings(record);
        if (timings is not null)
        {
            // The record does not say whether a periodic upload was paced; taking it for one only predicts slower.
            planner.RecordFlush(timings, fullSpeed: timings.Reason != CheckpointReason.Periodic);
            metrics.RestoreLastFlush(timings, record.DeadlineMissed, record.EndedAt);
        }
        else
        {
            metrics.RecordLastFlushEnded(record.DeadlineMissed, record.EndedAt);
        }

        if (record.DeadlineMissed)
        {
            // A missed flush has no timings; without this the next pod would recommend a grace period of 0 s.
            planner.RecordDeadlineMiss(record.EndedAt - record.TriggeredAt);
        }

        metrics.SetPrediction(planner.Predict());
        ReportingLog.Restored(logger, record.CheckpointId, record.Reason, record.Outcome, record.Pod, timings?.BudgetUsedRatio ?? double.NaN);
    }

    private void OnListening()
    {
        var settings = options.Value;
        // Only the trainer container's user (same group through fsGroup) may talk to the sidecar.
        socket.Publish();
        _ready = true;
        var metricsPort = BoundMetricsPort(settings.MetricsPort);
        HostingLog.Ready(logger, settings.SocketPath, metricsPort, store.Layout.JobDirectory, planner.GracePeriod.TotalSeconds);
        MemoryTrim.Request();
    }

    /// <summary>The TCP port Kestrel bound: the configured one, or the free one it chose for port 0.</summary>
    private int BoundMetricsPort(int configured)
    {
        var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses)
        {
            if (!address.Contains("unix:", StringComparison.Ordinal) && Uri.TryCreate(address, UriKind.Absolute, out var uri))
            {
                return uri.Port;
            }
        }

        return configured;
    }
}
