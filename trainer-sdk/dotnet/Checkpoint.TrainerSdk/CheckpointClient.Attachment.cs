using Checkpoint.TrainerSdk.Internal;
using Grpc.Core;
using Proto = Checkpoint.Protos.V1;

namespace Checkpoint.TrainerSdk;

// The attachment: the Attach stream through which the sidecar pushes dump requests, and the trainer id it stands for.
// When the stream ends while the client lives (the sidecar container crashed and was restarted, or was upgraded), the
// client attaches again in the background with a bounded backoff and gets a new trainer id (CheckpointClientOptions.Reattach).
public sealed partial class CheckpointClient
{
    // Retry backoff while the sidecar is away, not a synchronisation: disposing the client ends the wait at once.
    private static readonly TimeSpan FirstReattachDelay = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxReattachDelay = TimeSpan.FromSeconds(2);

    private readonly Lock attachGate = new();

    // The latest attachment, kept while detached so TrainerId and GracePeriod keep naming it; replaced as a whole.
    private Attachment? attachment;

    // The rest is guarded by attachGate.
    private bool attached;
    private string detachReason = "not attached yet";
    private TaskCompletionSource attachedSignal = NewSignal();
    private TaskCompletionSource detachedSignal = NewSignal();
    private Task commandLoop = Task.CompletedTask;
    private Task reattachLoop = Task.CompletedTask;

    /// <summary>
    /// The identifier the sidecar gave this process's current attachment (or, while detached, its last one). A reattachment
    /// after a sidecar restart gets a new identifier.
    /// </summary>
    public string TrainerId => Volatile.Read(ref attachment)?.TrainerId ?? string.Empty;

    /// <summary>The grace period the sidecar plans preemption flushes against.</summary>
    public TimeSpan GracePeriod => Volatile.Read(ref attachment)?.GracePeriod ?? TimeSpan.Zero;

    // Ticks of the sidecar's newest recommendation, or -1 while it has none: written by the attach and outcome paths.
    private long recommendedIntervalTicks = -1;

    /// <summary>
    /// The job's recommended checkpoint interval (Young/Daly, from the measured checkpoint cost and the job's preemptions),
    /// as the sidecar last told it: on attaching and with every <see cref="CheckpointOutcome"/>. <see langword="null"/> while
    /// the sidecar does not know one yet (too few checkpoints or preemptions seen). The SDK does not schedule checkpoints
    /// itself: a training loop that follows it converts it into steps from its own step time, and keeps a fixed interval
    /// while it is <see langword="null"/> (the sidecar learns the checkpoint cost from those checkpoints).
    /// </summary>
    public TimeSpan? RecommendedInterval =>
        Interlocked.Read(ref recommendedIntervalTicks) is var ticks and >= 0 ? TimeSpan.FromTicks(ticks) : null;

    // The sidecar's latest word wins, an unset one too (a restarted sidecar that has not read the records yet).
    private void NoteRecommendedInterval(Google.Protobuf.WellKnownTypes.Duration? recommended) =>
        Interlocked.Exchange(ref recommendedIntervalTicks, recommended is null ? -1 : Math.Max(0, recommended.ToTimeSpan().Ticks));

    /// <summary>
    /// Whether the attachment to the sidecar is alive. It turns false when the sidecar goes away; with
    /// <see cref="CheckpointClientOptions.Reattach"/> set it turns true again once the client has reattached.
    /// </summary>
    public bool IsAttached
    {
        get
        {
            lock (attachGate)
            {
                return attached;
            }
        }
    }

    /// <summary>
    /// Waits until the client is attached: at once while it is, otherwise until it has reattached after the sidecar came
    /// back (see <see cref="CheckpointClientOptions.Reattach"/>). Without reattaching, a detached client never attaches again.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>A task that completes once attached.</returns>
    /// <exception cref="ObjectDisposedException">The client is or was meanwhile disposed.</exception>
    public Task WaitForAttachmentAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) == 1, this);
        Task signal;
        lock (attachGate)
        {
            signal = attachedSignal.Task;
        }

        return signal.WaitAsync(cancellationToken);
    }

    /// <summary>Completes once the current attachment is lost (or the client is disposed); for tests.</summary>
    internal Task WaitForDetachmentAsync(CancellationToken cancellationToken = default)
    {
        Task signal;
        lock (attachGate)
        {
            signal = detachedSignal.Task;
        }

        return signal.WaitAsync(cancellationToken);
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Opens an Attach stream and waits for the sidecar's confirmation; the caller makes it the current attachment. Every
    // attachment, the first and each reattachment, tells the sidecar the same rank and world.
    private async Task<Attachment> AttachOnceAsync(CancellationToken cancellationToken)
    {
        var call = sidecar.Attach(
            attachRequest,
            cancellationToken: lifetime.Token);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(options.ConnectTimeout);
            bool received;
            try
            {
                received = await call.ResponseStream.MoveNext(timeout.Token).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is RpcException or OperationCanceledException && timeout.IsCancellationRequested)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw errors.Unreachable(
                    "Attach",
                    $"no answer within {options.ConnectTimeout.TotalSeconds:0.#} s",
                    exception);
            }
            catch (Exception exception) when (exception is RpcException || SidecarErrors.IsTransportFailure(exception))
            {
                throw errors.Translate("Attach", exception);
            }

            if (!received || call.ResponseStream.Current.CommandCase != Proto.SidecarCommand.CommandOneofCase.Attached)
            {
                throw new CheckpointException(
                    $"The checkpoint sidecar at {options.SocketPath} did not confirm the attachment of rank {options.Rank}: " +
                    (received ? $"its first message was {call.ResponseStream.Current.CommandCase} instead of Attached." : "it closed the stream."),
                    CheckpointErrorCode.Internal);
            }

            var confirmed = call.ResponseStream.Current.Attached;
            NoteRecommendedInterval(confirmed.RecommendedInterval);
            return new Attachment(confirmed.TrainerId, ProtoMapping.ToTimeSpan(confirmed.GracePeriod), call);
        }
        catch
        {
            call.Dispose();
            throw;
        }
    }

    // Makes an attachment current and starts listening on it; false (and the stream closed) when the client was disposed.
    private bool Activate(Attachment next)
    {
        lock (attachGate)
        {
            if (lifetime.IsCancellationRequested)
            {
                next.Call.Dispose();
                return false;
            }

            Volatile.Write(ref attachment, next);
            attached = true;
            attachedSignal.TrySetResult();
            if (detachedSignal.Task.IsCompleted)
            {
                detachedSignal = NewSignal();
            }

            // The loop must outlive the caller's connect token: it stops when the stream ends or the client is disposed.
            commandLoop = Task.Run(() => ReadCommandsAsync(next), CancellationToken.None);
            return true;
        }
    }

    private async Task ReadCommandsAsync(Attachment current)
    {
        var call = current.Call;
        string why;
        try
        {
            while (await call.ResponseStream.MoveNext(lifetime.Token).ConfigureAwait(false))
            {
                var command = call.ResponseStream.Current;
                if (command.CommandCase == Proto.SidecarCommand.CommandOneofCase.Dump)
                {
                    HandleDumpRequest(ProtoMapping.ToDumpRequest(command.Dump));
                }
            }

            why = "the sidecar closed the attachment stream";
        }
        catch (Exception) when (lifetime.IsCancellationRequested)
        {
            return;
        }
        catch (RpcException exception)
        {
            why = $"the attachment stream broke ({exception.StatusCode}: {exception.Status.Detail})";
        }
        catch (Exception exception) when (SidecarErrors.IsTransportFailure(exception))
        {
            why = $"the attachment stream broke ({exception.Message})";
        }

        OnAttachmentLost(current, why);
    }

    // Runs once per lost attachment; decides between reattaching, staying detached and (during termination) exiting.
    private void OnAttachmentLost(Attachment lost, string why)
    {
        lock (attachGate)
        {
            if (!attached || !ReferenceEquals(Volatile.Read(ref attachment), lost) || lifetime.IsCancellationRequested)
            {
                return;
            }

            attached = false;
            detachReason = why;
            if (attachedSignal.Task.IsCompleted)
            {
                attachedSignal = NewSignal();
            }

            detachedSignal.TrySetResult();
        }

        lost.Call.Dispose();

        // A dump request of the old attachment names a checkpoint a restarted sidecar does not know; reporting it would fail.
        Volatile.Write(ref pendingDump, null);

        if (!ContinueAfterAttachmentLostDuringTermination(why))
        {
            return;
        }

        if (!options.Reattach)
        {
            Log($"detached from the checkpoint sidecar: {why}; reattaching is off, so calls that need the sidecar fail from now on");
            return;
        }

        Log($"detached from the checkpoint sidecar: {why}; reattaching in the background, checkpoint calls fail until then");
        lock (attachGate)
        {
            if (!lifetime.IsCancellationRequested)
            {
                reattachLoop = Task.Run(ReattachAsync, CancellationToken.None);
            }
        }
    }

    private async Task ReattachAsync()
    {
        var delay = FirstReattachDelay;
        for (int attempt = 1; ; attempt++)
        {
            Attachment next;
            try
            {
                await BackOffAsync(delay).ConfigureAwait(false);
                next = await AttachOnceAsync(lifetime.Token).ConfigureAwait(false);
            }
            catch (Exception) when (lifetime.IsCancellationRequested)
            {
                return;
            }
            catch (CheckpointException)
            {
                // The sidecar is not back yet; the detach was logged once, and so will the reattachment be.
                delay = delay * 2 < MaxReattachDelay ? delay * 2 : MaxReattachDelay;
                continue;
            }

            if (Activate(next))
            {
                Log($"reattached to the checkpoint sidecar as trainer {next.TrainerId} (attempt {attempt})");
            }

            return;
        }
    }

    // Waits before the next attempt. Once SIGTERM has come the sidecar is awaited for a few seconds only
    // (NotifyTerminationTimeout): the wait under way ends at once and the next ones stay at the shortest,
    // so a sidecar back 3 s after SIGTERM is not missed by a 2 s backoff.
    private async Task BackOffAsync(TimeSpan delay)
    {
        var terminating = terminationStarted.Task;
        if (terminating.IsCompleted)
        {
            await Task.Delay(FirstReattachDelay, options.TimeProvider, lifetime.Token).ConfigureAwait(false);
            return;
        }

        await Task.WhenAny(Task.Delay(delay, options.TimeProvider, lifetime.Token), terminating).ConfigureAwait(false);
        lifetime.Token.ThrowIfCancellationRequested();
    }

    // The trainer id to send with a call that needs the attachment; fails fast while detached.
    private string AttachedTrainerId(string operation)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) == 1, this);
        lock (attachGate)
        {
            if (attached && Volatile.Read(ref attachment) is { } current)
            {
                return current.TrainerId;
            }

            throw new CheckpointException($"{operation} failed: {DetachedExplanation()}", CheckpointErrorCode.Unavailable);
        }
    }

    // Adds the detached state to an "unreachable" failure so the trainer's log says the SDK is on it.
    private CheckpointException ExplainDetached(CheckpointException exception)
    {
        if (exception.StatusCode != CheckpointErrorCode.Unavailable)
        {
            return exception;
        }

        lock (attachGate)
        {
            return attached || lifetime.IsCancellationRequested
                ? exception
                : new CheckpointException($"{exception.Message} {DetachedExplanation()}", CheckpointErrorCode.Unavailable, exception.InnerException);
        }
    }

    // Caller holds attachGate.
    private string DetachedExplanation() =>
        options.Reattach
            ? $"this process is detached from the checkpoint sidecar at {options.SocketPath} ({detachReason}); the SDK is reattaching " +
              "in the background and checkpoints work again once the sidecar is back."
            : $"this process is detached from the checkpoint sidecar at {options.SocketPath} ({detachReason}) and reattaching is off " +
              $"({nameof(CheckpointClientOptions)}.{nameof(CheckpointClientOptions.Reattach)}), so it stays detached.";

    private async Task StopAttachmentAsync()
    {
        Task listener, reattacher;
        lock (attachGate)
        {
            // lifetime is cancelled: no loop starts after this point.
            listener = commandLoop;
            reattacher = reattachLoop;
            attachedSignal.TrySetException(new ObjectDisposedException(nameof(CheckpointClient)));
            detachedSignal.TrySetResult();
        }

        try
        {
            await Task.WhenAll(listener, reattacher).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The loops end by cancellation on dispose; nothing to report.
        }

        Volatile.Read(ref attachment)?.Call.Dispose();
    }

    private sealed class Attachment(string trainerId, TimeSpan gracePeriod, AsyncServerStreamingCall<Proto.SidecarCommand> call)
    {
        public string TrainerId { get; } = trainerId;

        public TimeSpan GracePeriod { get; } = gracePeriod;

        public AsyncServerStreamingCall<Proto.SidecarCommand> Call { get; } = call;
    }
}
