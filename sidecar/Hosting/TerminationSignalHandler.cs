using System.Runtime.InteropServices;
using Checkpoint.Sidecar.Flush;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// SIGTERM (and SIGINT) start the preemption flush instead of stopping the process; the host stops
/// once the flush is committed, has failed, or its deadline has passed. Repeated signals join the
/// flush under way.
/// </summary>
internal sealed class TerminationSignalHandler(
    FlushCoordinator coordinator,
    IHostApplicationLifetime lifetime,
    TimeProvider time,
    ILogger<TerminationSignalHandler> logger) : IHostedService, IDisposable
{
    /// <summary>Past the deadline, a flush stuck in storage I/O must not keep the pod until SIGKILL.</summary>
    private static readonly TimeSpan StuckFlushAllowance = TimeSpan.FromSeconds(1);

    /// <summary>Reports get at least this long even when the deadline has passed.</summary>
    private static readonly TimeSpan ReportsMinimum = TimeSpan.FromMilliseconds(500);

    private readonly List<PosixSignalRegistration> _registrations = [];
    private int _stopping;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal));
        _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal));
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        HostingLog.SignalReceived(logger, context.Signal.ToString());
        TerminationTicket ticket;
        try
        {
            ticket = coordinator.Terminate(TerminationSource.Signal);
        }
        catch (Exception e)
        {
            // Nothing may escape a signal handler: the runtime would abort the process with no log, no
            // record and no Event. Known failures (no staging) already end as a failed flush; this is
            // for the unforeseen ones.
            var exceptionType = e.GetType().Name;
            HostingLog.TerminationFailed(logger, exceptionType, e.Message);
            Environment.ExitCode = 1;
            lifetime.StopApplication();
            return;
        }

        if (Interlocked.Exchange(ref _stopping, 1) == 0)
        {
            _ = StopWhenFlushedAsync(ticket);
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private async Task StopWhenFlushedAsync(TerminationTicket ticket)
    {
        var flushed = coordinator.Terminated;
        if (ticket.Deadline is { } deadline)
        {
            var wait = deadline - time.GetUtcNow() + StuckFlushAllowance;
            await Task.WhenAny(flushed, Task.Delay(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, time)).ConfigureAwait(false);
        }
        else
        {
            await flushed.ConfigureAwait(false);
        }

        var outcome = flushed.IsCompleted ? await flushed.ConfigureAwait(false) : null;

        // The Event, the flush record and the Pushgateway push must leave before the process does,
        // and a trainer that has just reported must still learn the outcome: linger until the
        // trainers have gone (the SDKs exit once they know), never past the deadline. Lingering costs
        // nothing: the pod ends only when its trainer container has ended anyway.
        var allowance = ticket.Deadline is { } end ? end - time.GetUtcNow() + StuckFlushAllowance : StuckFlushAllowance;
        await Task.WhenAll(
            Task.WhenAny(coordinator.ReportsDrained, Task.Delay(Max(allowance, ReportsMinimum), time)),
            Task.WhenAny(coordinator.NoTrainersAttached, Task.Delay(Max(TimeSpan.Zero, allowance), time))).ConfigureAwait(false);
        // Exit 1 tells the kubelet (and anyone reading the pod status) that the flush did not commit.
        Environment.ExitCode = outcome is null || outcome.Status == CheckpointStatus.Committed ? 0 : 1;
        if (!flushed.IsCompleted)
        {
            Environment.ExitCode = 1;
        }

        var summary = outcome is not null ? outcome.Status.ToString()
            : !flushed.IsCompleted ? "deadline passed"
            : coordinator.EndedAsShutdown ? "training had ended" : "nothing to flush";
        HostingLog.Stopping(logger, summary);
        lifetime.StopApplication();
    }
}
