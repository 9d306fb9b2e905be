using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// Lets one request body at a time in per connection. gRPC keeps a request in memory until its whole
/// message is in, so a client that opened many streams and stalled each just short of its end would
/// make the sidecar hold streams × CHECKPOINT_MAX_REPORT_KIB; waiting for their turn, the other streams
/// hold no more than their flow-control window. The body let in is timed by Kestrel's minimum data
/// rate: if it stalls, the connection goes, with every stream waiting behind it. A real client's bodies
/// are small and quick, and its calls on other connections never wait.
/// </summary>
internal static class RequestBodyGate
{
    private static readonly object TurnKey = new();

    public static async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (context.Features.Get<IHttpRequestBodyDetectionFeature>() is not { CanHaveBody: true }
            || context.Features.Get<IConnectionItemsFeature>() is not { } connection
            || context.Features.Get<IRequestBodyPipeFeature>() is not { } body)
        {
            await next(context).ConfigureAwait(false);
            return;
        }

        var turn = TurnOf(connection.Items);
        try
        {
            await turn.WaitAsync(context.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The connection went (its admitted body stalled) or the caller gave up while waiting.
            return;
        }

        var admitted = new AdmittedBody(body.Reader, turn);
        context.Features.Set<IRequestBodyPipeFeature>(admitted);
        try
        {
            await next(context).ConfigureAwait(false);
        }
        finally
        {
            admitted.EndTurn();
        }
    }

    private static SemaphoreSlim TurnOf(IDictionary<object, object?> connectionItems)
    {
        // Streams of one connection run concurrently; the connection's items are not thread-safe.
        lock (connectionItems)
        {
            if (connectionItems.TryGetValue(TurnKey, out var existing) && existing is SemaphoreSlim turn)
            {
                return turn;
            }

            turn = new SemaphoreSlim(1, 1);
            connectionItems[TurnKey] = turn;
            return turn;
        }
    }

    /// <summary>The body of the request whose turn it is; the turn passes on as soon as the body is in.</summary>
    private sealed class AdmittedBody(PipeReader inner, SemaphoreSlim turn) : PipeReader, IRequestBodyPipeFeature
    {
        private int _ended;

        public PipeReader Reader => this;

        public void EndTurn()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                turn.Release();
            }
        }

        public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            var result = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsCompleted)
            {
                EndTurn();
            }

            return result;
        }

        public override bool TryRead(out ReadResult result)
        {
            if (!inner.TryRead(out result))
            {
                return false;
            }

            if (result.IsCompleted)
            {
                EndTurn();
            }

            return true;
        }

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            EndTurn();
            inner.Complete(exception);
        }
    }
}
