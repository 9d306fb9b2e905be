using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// Before the socket accepts calls: the job directory exists and whatever a killed predecessor left
/// half-written is swept. Once the server listens: the socket's permissions are set and /readyz
/// turns ready.
/// </summary>
internal sealed class StartupTasks(
    CheckpointStore store,
    IOptions<SidecarOptions> options,
    FlushPlanner planner,
    IHostApplicationLifetime lifetime,
    ILogger<StartupTasks> logger) : IHostedService
{
    private volatile bool _ready;

    public bool IsReady => _ready;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        store.EnsureJobDirectory();
        store.SweepLeftovers();
        lifetime.ApplicationStarted.Register(OnListening);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void OnListening()
    {
        var settings = options.Value;
        // Only the trainer container's user (same group through fsGroup) may talk to the sidecar.
        File.SetUnixFileMode(settings.SocketPath,
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite);
        _ready = true;
        HostingLog.Ready(logger, settings.SocketPath, settings.MetricsPort, store.Layout.JobDirectory, planner.GracePeriod.TotalSeconds);
    }

    /// <summary>A socket file left by a killed sidecar would make the bind fail.</summary>
    public static void RemoveStaleSocket(string socketPath, ILogger logger)
    {
        if (File.Exists(socketPath))
        {
            File.Delete(socketPath);
            HostingLog.StaleSocketRemoved(logger, socketPath);
        }
    }
}
