using System.Runtime.InteropServices;
using Proto = Checkpoint.Protos.V1;

namespace Checkpoint.TrainerSdk;

// Pod termination: the kubelet sends SIGTERM to every container at once and SIGKILLs whatever still runs when the grace
// period ends. The trainer must survive SIGTERM long enough to dump, and must not outlive the point where its dump can
// still be committed, so that it exits with the "run me again" code instead of being killed mid-write.
public sealed partial class CheckpointClient
{
    // Long enough for a busy sidecar, short enough to leave most of the grace period when it is gone.
    private static readonly TimeSpan NotifyTerminationTimeout = TimeSpan.FromSeconds(5);

    // Kubernetes' default terminationGracePeriodSeconds, for a sidecar that names no deadline or grace period.
    private static readonly TimeSpan FallbackGracePeriod = TimeSpan.FromSeconds(30);

    private readonly Lock terminationGate = new();
    private PosixSignalRegistration? sigtermRegistration;
    private ITimer? deadlineWatchdog;
    private DateTimeOffset? watchdogDeadline;
    private Task<CheckpointOutcome>? preemptionOutcome;
    private int terminationSignalled;
    // Completed at the first SIGTERM: wakes a reattachment backing off, for the sidecar is awaited only
    // NotifyTerminationTimeout from then on.
    private readonly TaskCompletionSource terminationStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int terminationNotified;
    private int preemptionDumpSeen;
    private int exiting;

    /// <summary>
    /// Whether the pod is being terminated: this process received SIGTERM (with
    /// <see cref="CheckpointClientOptions.HandleTermination"/> set) or the sidecar asked for a preemption dump.
    /// Periodic checkpoints are pointless from then on.
    /// </summary>
    public bool TerminationRequested =>
        Volatile.Read(ref terminationSignalled) == 1 || Volatile.Read(ref preemptionDumpSeen) == 1;

    private void RegisterTerminationSignal()
    {
        try
        {
            // Cancelling keeps the runtime from shutting down; the sidecar's flush, not the signal, decides when we exit.
            sigtermRegistration = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
            {
                context.Cancel = true;
                _ = Task.Run(OnTerminationSignalAsync);
            });
        }
        catch (PlatformNotSupportedException)
        {
            Log("SIGTERM cannot be intercepted on this platform; the process will end on SIGTERM without a preemption checkpoint");
        }
    }

    // Tells the sidecar, which starts (or joins) the preemption flush. While detached with reattaching on it waits up to
    // NotifyTerminationTimeout, counted from the signal, for the sidecar to come back; past that there is nothing to wait for.
    private async Task OnTerminationSignalAsync()
    {
        if (Interlocked.Exchange(ref terminationSignalled, 1) == 1)
        {
            Log("SIGTERM received again; the preemption checkpoint is already under way");
            return;
        }

        terminationStarted.TrySetResult();
        Log("SIGTERM received: asking the checkpoint sidecar to start the preemption checkpoint");
        var giveUpAt = options.TimeProvider.GetUtcNow() + NotifyTerminationTimeout;
        while (true)
        {
            bool isAttached;
            string trainerId;
            Task reattached, detached;
            lock (attachGate)
            {
                isAttached = attached;
                trainerId = TrainerId;
                reattached = attachedSignal.Task;
                detached = detachedSignal.Task;
            }

            var remaining = giveUpAt - options.TimeProvider.GetUtcNow();
            if (!isAttached)
            {
                if (!options.Reattach || remaining <= TimeSpan.Zero)
                {
                    ExitForPreemption(options.Reattach
                        ? $"the checkpoint sidecar did not come back within {NotifyTerminationTimeout.TotalSeconds:0} s of SIGTERM, so there is nothing to wait for"
                        : "detached from the checkpoint sidecar at SIGTERM and reattaching is off, so there is nothing to wait for");
                    return;
                }

                Log($"SIGTERM while detached from the checkpoint sidecar: waiting up to {remaining.TotalSeconds:0.#} s for the reattachment");
                if (!await WaitBoundedAsync(reattached, remaining).ConfigureAwait(false) && lifetime.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(lifetime.Token);
            timeout.CancelAfter(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero);
            try
            {
                var response = await CallAsync(
                    "NotifyTermination",
                    token => sidecar.NotifyTerminationAsync(new Proto.NotifyTerminationRequest { TrainerId = trainerId }, cancellationToken: token),
                    timeout.Token).ConfigureAwait(false);
                Volatile.Write(ref terminationNotified, 1);
                var deadline = response.Deadline?.ToDateTimeOffset() ?? DefaultDeadline();
                Log($"the sidecar is taking preemption checkpoint {response.CheckpointId}; it must be committed by {deadline:O}");
                ArmWatchdog(deadline);
                return;
            }
            catch (OperationCanceledException) when (lifetime.IsCancellationRequested)
            {
                // Disposed meanwhile: the trainer has taken termination back into its own hands.
                return;
            }
            catch (CheckpointException exception) when (options.Reattach && exception.StatusCode == CheckpointErrorCode.Unavailable)
            {
                // The sidecar went away under the attachment, which the listener may not have noticed yet: once it has, wait for
                // the reattachment above. If the attachment is not lost by then, give up as below.
                remaining = giveUpAt - options.TimeProvider.GetUtcNow();
                if (await WaitBoundedAsync(detached, remaining).ConfigureAwait(false))
                {
                    continue;
                }

                ExitForPreemption($"could not tell the checkpoint sidecar about SIGTERM, so there is nothing to wait for. {exception.Message}");
                return;
            }
            catch (Exception exception) when (exception is CheckpointException or OperationCanceledException or ObjectDisposedException)
            {
                string why = exception is OperationCanceledException
                    ? $"no answer within {NotifyTerminationTimeout.TotalSeconds:0} s"
                    : exception.Message;
                ExitForPreemption($"could not tell the checkpoint sidecar about SIGTERM, so there is nothing to wait for. {why}");
                return;
            }
        }
    }

    // True when the signal completed within the bound; false on timeout, on dispose, or when the bound is already spent.
    private async Task<bool> WaitBoundedAsync(Task signal, TimeSpan bound)
    {
        if (bound <= TimeSpan.Zero)
        {
            return signal.IsCompletedSuccessfully;
        }

        try
        {
            await signal.WaitAsync(bound, options.TimeProvider, lifetime.Token).ConfigureAwait(false);
            return !lifetime.IsCancellationRequested;
        }
        catch (Exception exception) when (exception is TimeoutException or OperationCanceledException or ObjectDisposedException)
        {
            return false;
        }
    }

    private void OnPreemptionDumpRequested(DumpRequest dump)
    {
        Volatile.Write(ref preemptionDumpSeen, 1);
        if (options.HandleTermination)
        {
            ArmWatchdog(dump.Deadline ?? DefaultDeadline());
        }
    }

    // Whether losing the attachment leaves the trainer to carry on (and reattach); false when it was handled here because the
    // pod terminates: then only a SIGTERM still waiting to reach the sidecar is worth reattaching for.
    private bool ContinueAfterAttachmentLostDuringTermination(string why)
    {
        if (!options.HandleTermination || !TerminationRequested)
        {
            return true;
        }

        lock (terminationGate)
        {
            if (preemptionOutcome is not null)
            {
                // The reported dump's outcome wait fails on its own if the sidecar is really gone, and exits then.
                Log($"detached from the checkpoint sidecar: {why}");
                return false;
            }
        }

        bool sigtermNotYetTold = Volatile.Read(ref terminationSignalled) == 1
            && Volatile.Read(ref terminationNotified) == 0
            && Volatile.Read(ref preemptionDumpSeen) == 0;
        if (options.Reattach && sigtermNotYetTold)
        {
            // The SIGTERM handler waits, bounded, for the reattachment and tells the new sidecar, or exits.
            return true;
        }

        Log($"detached from the checkpoint sidecar: {why}");
        ExitForPreemption("the sidecar went away while the pod terminates; no preemption checkpoint can be committed any more");
        return false;
    }

    private Task<CheckpointOutcome> FinishPreemption(string checkpointId)
    {
        lock (terminationGate)
        {
            return preemptionOutcome ??= WaitForPreemptionOutcomeThenExitAsync(checkpointId);
        }
    }

    private async Task<CheckpointOutcome> WaitForPreemptionOutcomeThenExitAsync(string checkpointId)
    {
        CheckpointOutcome outcome;
        try
        {
            outcome = await WaitForCheckpointAsync(checkpointId, lifetime.Token).ConfigureAwait(false);
        }
        catch (CheckpointException exception)
        {
            ExitForPreemption($"could not learn the outcome of preemption checkpoint {checkpointId}: {exception.Message}");
            throw;
        }

        string result = outcome.Status switch
        {
            CheckpointStatus.Committed => $"committed at step {outcome.Step} in {outcome.Directory}",
            CheckpointStatus.Failed => $"failed: {outcome.Error}",
            _ => outcome.Status.ToString().ToLowerInvariant(),
        };
        ExitForPreemption($"preemption checkpoint {checkpointId} {result}");
        return outcome;
    }

    private void ArmWatchdog(DateTimeOffset deadline)
    {
        lock (terminationGate)
        {
            if (watchdogDeadline is { } armed && armed <= deadline)
            {
                return;
            }

            watchdogDeadline = deadline;
            deadlineWatchdog?.Dispose();
            var due = deadline - options.TimeProvider.GetUtcNow();
            due = due < TimeSpan.Zero ? TimeSpan.Zero : due;
            deadlineWatchdog = options.TimeProvider.CreateTimer(_ => OnDeadlinePassed(deadline), null, due, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnDeadlinePassed(DateTimeOffset deadline)
    {
        lock (terminationGate)
        {
            if (preemptionOutcome is { IsCompletedSuccessfully: true })
            {
                return;
            }
        }

        ExitForPreemption($"the preemption deadline {deadline:O} passed before the preemption checkpoint was committed");
    }

    private void ExitForPreemption(string why)
    {
        if (Volatile.Read(ref disposed) == 1 || Interlocked.Exchange(ref exiting, 1) == 1)
        {
            return;
        }

        Log($"exiting with code {options.PreemptionExitCode}: {why}");
        options.ExitProcess(options.PreemptionExitCode);
    }

    private DateTimeOffset DefaultDeadline() =>
        options.TimeProvider.GetUtcNow() + (GracePeriod > TimeSpan.Zero ? GracePeriod : FallbackGracePeriod);

    private void DisposeTermination()
    {
        lock (terminationGate)
        {
            sigtermRegistration?.Dispose();
            sigtermRegistration = null;
            deadlineWatchdog?.Dispose();
            deadlineWatchdog = null;
        }
    }
}
