using Microsoft.Extensions.Hosting;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// Replaces the console lifetime, which stops the host on SIGTERM: the sidecar must keep serving
/// the trainer's report through the preemption flush. <see cref="TerminationSignalHandler"/> owns
/// the signals and stops the host when the flush has ended.
/// </summary>
internal sealed class SidecarHostLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
