using Checkpoint.TrainerSdk.Internal;
using Grpc.Core;
using Grpc.Net.Client;
using Proto = Checkpoint.Protos.V1;

namespace Checkpoint.TrainerSdk;

/// <summary>
/// A training process's connection to the checkpoint sidecar in its pod.
/// </summary>
/// <remarks>
/// <para>
/// Connect once at start-up with <see cref="ConnectAsync"/> and keep the client for the life of the process: the connection
/// holds the attachment through which the sidecar pushes "dump now" when the pod is preempted. Disposing the client detaches.
/// If the sidecar goes away (its container is restarted or upgraded) the client reattaches in the background, with a new
/// <see cref="TrainerId"/>; see <see cref="CheckpointClientOptions.Reattach"/>.
/// </para>
/// <para>
/// Learn about dump requests either by polling <see cref="DumpRequested"/> / <see cref="PendingDump"/> at a step boundary
/// (the usual way: the model is consistent there) or with a callback registered through <see cref="OnDumpRequested"/>.
/// </para>
/// <para>
/// In a job of many pods give the world in <see cref="CheckpointClientOptions.WorldSize"/> and
/// <see cref="CheckpointClientOptions.WorldId"/>: checkpoints are then committed job-wide, and when any pod is preempted
/// every rank joins the job's preemption checkpoint through <see cref="BeginJobPreemptionCheckpointAsync"/>.
/// </para>
/// <para>
/// Every failure talking to the sidecar surfaces as <see cref="CheckpointException"/>. Members are safe to call from any thread.
/// </para>
/// </remarks>
public sealed partial class CheckpointClient : IAsyncDisposable
{
    private readonly CheckpointClientOptions options;
    private readonly GrpcChannel channel;
    private readonly Proto.CheckpointService.CheckpointServiceClient sidecar;
    private readonly SidecarErrors errors;

    // Who this process is, sent on the first attachment and on every reattachment; fixed at connect.
    private readonly Proto.AttachRequest attachRequest;

    // Cancelled on dispose: ends the Attach stream (which detaches), reattaching, and every background wait.
    private readonly CancellationTokenSource lifetime = new();

    private DumpRequest? pendingDump;

    // Copy-on-write so the listener can call handlers without holding a lock while they run.
    private Action<DumpRequest>[] dumpHandlers = [];
    private int disposed;

    private CheckpointClient(CheckpointClientOptions options, GrpcChannel channel)
    {
        this.options = options;
        this.channel = channel;
        sidecar = new Proto.CheckpointService.CheckpointServiceClient(channel);
        errors = new SidecarErrors(options.SocketPath);
        attachRequest = new Proto.AttachRequest
        {
            Rank = options.Rank,
            Description = options.Description ?? string.Empty,
            WorldSize = options.WorldSize,
            WorldId = options.WorldId,
        };
    }

    /// <summary>The rank this process attached with.</summary>
    public int Rank => attachRequest.Rank;

    /// <summary>
    /// The number of ranks in the whole job this process attached with (<see cref="CheckpointClientOptions.WorldSize"/>);
    /// 0 for a single-pod job.
    /// </summary>
    public int WorldSize => attachRequest.WorldSize;

    /// <summary>The run of the world this process attached with (<see cref="CheckpointClientOptions.WorldId"/>); empty for none.</summary>
    public string WorldId => attachRequest.WorldId;

    /// <summary>Whether the sidecar is waiting for this process to dump; check it at every step boundary.</summary>
    public bool DumpRequested => PendingDump is not null;

    /// <summary>The dump the sidecar is waiting for, or <see langword="null"/>; cleared once the dump is reported.</summary>
    public DumpRequest? PendingDump => Volatile.Read(ref pendingDump);

    /// <summary>
    /// Registers a callback for dump requests the sidecar pushes (preemptions). It runs on a background thread and should only
    /// note the request, for example by cancelling a token the training loop watches; write the checkpoint at the next step
    /// boundary. A request that arrived before registering is not replayed: check <see cref="PendingDump"/> after registering.
    /// An exception thrown by the callback is logged to stderr and leaves the request pending.
    /// </summary>
    /// <param name="handler">Called with each dump request.</param>
    /// <returns>Dispose it to unregister the callback.</returns>
    public IDisposable OnDumpRequested(Action<DumpRequest> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        UpdateHandlers(handlers => [.. handlers, handler]);
        return new DumpHandlerRegistration(this, handler);
    }

    /// <summary>
    /// Connects to the sidecar, attaches this process and starts listening for dump requests. When
    /// <see cref="CheckpointClientOptions.HandleTermination"/> is set it also takes over SIGTERM (see there).
    /// </summary>
    /// <param name="options">Where the sidecar is and how to behave; <see langword="null"/> reads everything from the environment.</param>
    /// <param name="cancellationToken">Abandons connecting.</param>
    /// <returns>The attached client.</returns>
    /// <exception cref="CheckpointException">
    /// The sidecar's socket did not appear or accept a connection within <see cref="CheckpointClientOptions.SocketWaitTimeout"/>,
    /// or the sidecar did not accept the attachment within <see cref="CheckpointClientOptions.ConnectTimeout"/>; the message
    /// names the socket path and what to check.
    /// </exception>
    public static async Task<CheckpointClient> ConnectAsync(CheckpointClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new CheckpointClientOptions();
        options.Validate();

        var client = new CheckpointClient(options, UnixSocketChannel.Create(options.SocketPath, options.ConnectTimeout));
        try
        {
            await SocketWait.UntilAcceptingAsync(options, client.errors, client.Log, cancellationToken).ConfigureAwait(false);
            client.Activate(await client.AttachOnceAsync(cancellationToken).ConfigureAwait(false));
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        if (options.HandleTermination)
        {
            client.RegisterTerminationSignal();
        }

        return client;
    }

    /// <summary>The newest committed checkpoint, to resume from; call it before training starts.</summary>
    /// <param name="cancellationToken">Abandons the call.</param>
    /// <returns>The checkpoint with this rank's metadata, or <see langword="null"/> when there is none (start fresh).</returns>
    /// <exception cref="CheckpointException">The sidecar could not be asked.</exception>
    public async Task<LatestCheckpoint?> GetLatestCheckpointAsync(CancellationToken cancellationToken = default)
    {
        var response = await CallAsync(
            "GetLatestCheckpoint",
            token => sidecar.GetLatestCheckpointAsync(new Proto.GetLatestCheckpointRequest { Rank = options.Rank }, cancellationToken: token),
            cancellationToken).ConfigureAwait(false);
        return response.Checkpoint is null ? null : ProtoMapping.ToLatest(response.Checkpoint);
    }

    /// <summary>
    /// Asks the sidecar for a checkpoint of the given step. Ranks of the pod that ask at the same step share one checkpoint.
    /// Write the files under <see cref="DumpRequest.RankDirectory"/> of the answer, then call <see cref="CompleteDumpAsync"/>
    /// or <see cref="SubmitDumpAsync"/>.
    /// </summary>
    /// <param name="step">The training step the checkpoint will hold.</param>
    /// <param name="reason"><see cref="CheckpointReason.Periodic"/> or <see cref="CheckpointReason.Manual"/>.</param>
    /// <param name="cancellationToken">Abandons the call.</param>
    /// <returns>Where to write the checkpoint's files.</returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="reason"/> is <see cref="CheckpointReason.Preemption"/>: the sidecar pushes its own pod's preemption dump,
    /// and a job-wide one needs a deadline (<see cref="BeginJobPreemptionCheckpointAsync"/>).
    /// </exception>
    /// <exception cref="CheckpointException">
    /// The sidecar refused (for example while the pod terminates) or could not be reached;
    /// <see cref="CheckpointErrorCode.Unavailable"/> at once while the client is detached (see <see cref="IsAttached"/>).
    /// </exception>
    public async Task<DumpRequest> BeginCheckpointAsync(long step, CheckpointReason reason = CheckpointReason.Periodic, CancellationToken cancellationToken = default)
    {
        if (reason is not (CheckpointReason.Periodic or CheckpointReason.Manual))
        {
            throw new ArgumentException(
                $"A trainer asks for {CheckpointReason.Periodic} or {CheckpointReason.Manual} checkpoints here. The sidecar pushes its own pod's " +
                $"preemption dump; to join a job-wide preemption checkpoint, call {nameof(BeginJobPreemptionCheckpointAsync)} with the agreed deadline.",
                nameof(reason));
        }

        var request = new Proto.BeginCheckpointRequest { TrainerId = AttachedTrainerId("BeginCheckpoint"), Step = step, Reason = ProtoMapping.ToProto(reason) };
        var response = await CallAsync(
            "BeginCheckpoint",
            token => sidecar.BeginCheckpointAsync(request, cancellationToken: token),
            cancellationToken).ConfigureAwait(false);
        if (response.Dump is null)
        {
            throw new CheckpointException(
                $"The checkpoint sidecar answered BeginCheckpoint for step {step} without a dump descriptor.",
                CheckpointErrorCode.Internal);
        }

        return ProtoMapping.ToDumpRequest(response.Dump);
    }

    /// <summary>
    /// Reports that this rank has written its files for a checkpoint. The sidecar checks the files at once and persists them in
    /// the background; learn the outcome with <see cref="WaitForCheckpointAsync"/>. Do not touch the files afterwards.
    /// </summary>
    /// <remarks>
    /// For a preemption dump with <see cref="CheckpointClientOptions.HandleTermination"/> set, the client then waits for the
    /// outcome in the background and ends the process with <see cref="CheckpointClientOptions.PreemptionExitCode"/>.
    /// </remarks>
    /// <param name="dump">The request the files answer.</param>
    /// <param name="step">The training step the files hold; all ranks of a checkpoint must report the same step.</param>
    /// <param name="relativeFiles">
    /// The regular files written, relative to <see cref="DumpRequest.StagingDirectory"/> with forward slashes
    /// (for example <c>rank-0/model.bin</c>, see <see cref="CheckpointLayout.RankFile"/>).
    /// </param>
    /// <param name="metadata">Free-form values stored with the checkpoint and handed back to this rank on resume.</param>
    /// <param name="cancellationToken">Abandons the call.</param>
    /// <returns>A task that completes when the sidecar has accepted the report.</returns>
    /// <exception cref="CheckpointException">
    /// <see cref="CheckpointErrorCode.InvalidArgument"/> names a file that is missing or not a regular file;
    /// <see cref="CheckpointErrorCode.NotFound"/> or <see cref="CheckpointErrorCode.FailedPrecondition"/> mean the checkpoint is
    /// unknown or already ended; <see cref="CheckpointErrorCode.Unavailable"/> means the sidecar could not be reached or the
    /// client is detached (see <see cref="IsAttached"/>).
    /// </exception>
    public async Task CompleteDumpAsync(
        DumpRequest dump,
        long step,
        IEnumerable<string> relativeFiles,
        IReadOnlyDictionary<string, string>? metadata = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dump);
        ArgumentNullException.ThrowIfNull(relativeFiles);

        var request = new Proto.ReportDumpRequest { CheckpointId = dump.CheckpointId, Step = step };
        foreach (string file in relativeFiles)
        {
            if (string.IsNullOrWhiteSpace(file))
            {
                throw new ArgumentException("A reported file path is empty.", nameof(relativeFiles));
            }

            request.Files.Add(file);
        }

        if (request.Files.Count == 0)
        {
            throw new ArgumentException($"Checkpoint {dump.CheckpointId}: a dump must report at least one file.", nameof(relativeFiles));
        }

        if (metadata is not null)
        {
            foreach (var (key, value) in metadata)
            {
                request.Metadata[key] = value;
            }
        }

        request.TrainerId = AttachedTrainerId("ReportDump");
        await CallAsync(
            "ReportDump",
            token => sidecar.ReportDumpAsync(request, cancellationToken: token),
            cancellationToken).ConfigureAwait(false);

        ClearPendingDump(dump.CheckpointId);
        if (dump.Reason == CheckpointReason.Preemption && options.HandleTermination)
        {
            _ = FinishPreemption(dump.CheckpointId);
        }
    }

    /// <summary>
    /// Reports a dump and returns as soon as the training loop may go on: at once for periodic and manual checkpoints, whose
    /// persisting continues in the background (a failure is logged to stderr; the next checkpoint covers it); for a preemption
    /// dump only when the checkpoint has an outcome, and with <see cref="CheckpointClientOptions.HandleTermination"/> set the
    /// process is ended with <see cref="CheckpointClientOptions.PreemptionExitCode"/> instead of returning.
    /// </summary>
    /// <param name="dump">The request the files answer.</param>
    /// <param name="step">The training step the files hold.</param>
    /// <param name="relativeFiles">The files written, relative to the staging directory (see <see cref="CompleteDumpAsync"/>).</param>
    /// <param name="metadata">Free-form values handed back to this rank on resume.</param>
    /// <param name="cancellationToken">Abandons reporting, or waiting for a preemption outcome.</param>
    /// <returns>The outcome of a preemption checkpoint; <see langword="null"/> for other checkpoints, which are still persisting.</returns>
    /// <exception cref="CheckpointException">The report was rejected, or the sidecar could not be reached.</exception>
    public async Task<CheckpointOutcome?> SubmitDumpAsync(
        DumpRequest dump,
        long step,
        IEnumerable<string> relativeFiles,
        IReadOnlyDictionary<string, string>? metadata = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dump);
        await CompleteDumpAsync(dump, step, relativeFiles, metadata, cancellationToken).ConfigureAwait(false);

        if (dump.Reason != CheckpointReason.Preemption)
        {
            _ = FollowInBackgroundAsync(dump.CheckpointId);
            return null;
        }

        return options.HandleTermination
            ? await FinishPreemption(dump.CheckpointId).WaitAsync(cancellationToken).ConfigureAwait(false)
            : await WaitForCheckpointAsync(dump.CheckpointId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Waits until a checkpoint is committed, has failed, or was superseded by a newer one.</summary>
    /// <param name="checkpointId">The checkpoint to wait for.</param>
    /// <param name="cancellationToken">Stops waiting; the checkpoint carries on regardless.</param>
    /// <returns>How the checkpoint ended.</returns>
    /// <exception cref="CheckpointException">The checkpoint is unknown, or the sidecar could not be reached.</exception>
    public async Task<CheckpointOutcome> WaitForCheckpointAsync(string checkpointId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointId);
        var outcome = await CallAsync(
            "WaitForCheckpoint",
            token => sidecar.WaitForCheckpointAsync(new Proto.WaitForCheckpointRequest { CheckpointId = checkpointId }, cancellationToken: token),
            cancellationToken).ConfigureAwait(false);
        NoteRecommendedInterval(outcome.RecommendedInterval);
        return ProtoMapping.ToOutcome(outcome);
    }

    /// <summary>The sidecar's view of the pod: grace period, attached trainers, last flush.</summary>
    /// <param name="cancellationToken">Abandons the call.</param>
    /// <returns>The sidecar's status.</returns>
    /// <exception cref="CheckpointException">The sidecar could not be reached.</exception>
    public async Task<SidecarStatus> GetStatusAsync(CancellationToken cancellationToken = default)
    {
        var status = await CallAsync(
            "GetStatus",
            token => sidecar.GetStatusAsync(new Proto.GetStatusRequest(), cancellationToken: token),
            cancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToStatus(status);
    }

    /// <summary>
    /// Detaches from the sidecar and gives SIGTERM back to the runtime's default handling. A checkpoint already reported keeps
    /// persisting in the sidecar.
    /// </summary>
    /// <returns>A task that completes once the background listener has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1)
        {
            return;
        }

        DisposeTermination();
        await lifetime.CancelAsync().ConfigureAwait(false);
        await StopAttachmentAsync().ConfigureAwait(false);
        channel.Dispose();
        lifetime.Dispose();
    }

    private void HandleDumpRequest(DumpRequest dump)
    {
        Volatile.Write(ref pendingDump, dump);
        string deadline = dump.Deadline is { } at ? $", deadline {at:O}" : string.Empty;
        string kind = dump.Drill ? "preemption drill, training goes on" : dump.Reason.ToString();
        Log($"the sidecar asks for dump {dump.CheckpointId} ({kind}{deadline}) into {dump.StagingDirectory}");

        if (dump.Reason == CheckpointReason.Preemption)
        {
            OnPreemptionDumpRequested(dump);
        }

        foreach (var handler in Volatile.Read(ref dumpHandlers))
        {
            try
            {
                handler(dump);
            }
#pragma warning disable CA1031 // A throwing handler must not stop the listener: later dump requests would go unseen.
            catch (Exception exception)
#pragma warning restore CA1031
            {
                Log($"a dump request callback threw; the request stays pending: {exception}");
            }
        }
    }

    private void UpdateHandlers(Func<Action<DumpRequest>[], Action<DumpRequest>[]> update)
    {
        Action<DumpRequest>[] current, updated;
        do
        {
            current = Volatile.Read(ref dumpHandlers);
            updated = update(current);
        }
        while (Interlocked.CompareExchange(ref dumpHandlers, updated, current) != current);
    }

    private void ClearPendingDump(string checkpointId)
    {
        var current = Volatile.Read(ref pendingDump);
        if (current is not null && current.CheckpointId == checkpointId)
        {
            Interlocked.CompareExchange(ref pendingDump, null, current);
        }
    }

    private async Task FollowInBackgroundAsync(string checkpointId)
    {
        try
        {
            var outcome = await WaitForCheckpointAsync(checkpointId, lifetime.Token).ConfigureAwait(false);
            if (outcome.Status == CheckpointStatus.Failed)
            {
                Log($"checkpoint {checkpointId} failed: {outcome.Error}");
            }
        }
        catch (OperationCanceledException) when (lifetime.IsCancellationRequested)
        {
            // Disposed while persisting; the sidecar carries on without us.
        }
        catch (CheckpointException exception)
        {
            Log($"could not learn the outcome of checkpoint {checkpointId}: {exception.Message}");
        }
    }

    private async Task<T> CallAsync<T>(string operation, Func<CancellationToken, AsyncUnaryCall<T>> start, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) == 1, this);
        try
        {
            using var call = start(cancellationToken);
            return await call.ResponseAsync.ConfigureAwait(false);
        }
        catch (RpcException exception) when (exception.StatusCode == StatusCode.Cancelled && cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException($"{operation} was cancelled.", exception, cancellationToken);
        }
        catch (Exception exception) when (exception is RpcException || SidecarErrors.IsTransportFailure(exception))
        {
            throw ExplainDetached(errors.Translate(operation, exception));
        }
    }

    private void Log(string message)
    {
        try
        {
            options.Log.WriteLine($"[checkpoint-sdk rank {options.Rank}] {message}");
            options.Log.Flush();
        }
        catch (IOException)
        {
            // stderr closed: diagnostics are best effort and must never change what the trainer does.
        }
        catch (ObjectDisposedException)
        {
            // Same as above, during process exit.
        }
    }

    private sealed class DumpHandlerRegistration(CheckpointClient client, Action<DumpRequest> handler) : IDisposable
    {
        private int disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) == 0)
            {
                client.UpdateHandlers(handlers => Array.FindAll(handlers, registered => !ReferenceEquals(registered, handler)));
            }
        }
    }
}
