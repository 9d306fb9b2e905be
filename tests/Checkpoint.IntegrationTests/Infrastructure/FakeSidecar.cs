using System.Threading.Channels;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Proto = Checkpoint.Protos.V1;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// An in-process stand-in for the sidecar's gRPC service on a Unix socket (real HTTP/2, real protobuf on the wire) that
/// records what the SDK sends and answers what the test sets. For what the SDK puts on the wire when the real sidecar does
/// not show it (it logs no world size) or does not do it yet; behaviour is tested against the real sidecar.
/// </summary>
internal sealed class FakeSidecar : IAsyncDisposable
{
    private const string ServiceName = "checkpoint.v1.CheckpointService";

    private readonly WebApplication app;
    private readonly Lock gate = new();
    private readonly List<TaskCompletionSource> openAttachments = [];
    private int attachments;

    private FakeSidecar(string socketPath)
    {
        SocketPath = socketPath;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenUnixSocket(socketPath, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(this);
        builder.Services.AddSingleton<IServiceMethodProvider<FakeSidecar>, Binding>();
        app = builder.Build();
        app.MapGrpcService<FakeSidecar>();
    }

    public string SocketPath { get; }

    /// <summary>Every Attach request, in arrival order (the first attachment and each reattachment).</summary>
    public Channel<Proto.AttachRequest> Attaches { get; } = Channel.CreateUnbounded<Proto.AttachRequest>();

    /// <summary>Every BeginCheckpoint request, in arrival order.</summary>
    public Channel<Proto.BeginCheckpointRequest> Begins { get; } = Channel.CreateUnbounded<Proto.BeginCheckpointRequest>();

    /// <summary>
    /// How BeginCheckpoint answers; by default a dump of checkpoint <c>ckpt-1</c> with the request's reason and deadline,
    /// staged under <c>/staging/ckpt-1</c>.
    /// </summary>
    public Func<Proto.BeginCheckpointRequest, Proto.BeginCheckpointResponse> AnswerBegin { get; set; } = request => new()
    {
        Dump = new Proto.DumpRequest
        {
            CheckpointId = "ckpt-1",
            Reason = request.Reason,
            Deadline = request.Deadline,
            StagingDir = "/staging/ckpt-1",
        },
    };

    /// <summary>What WaitForCheckpoint answers; by default committed, at step 0.</summary>
    public Func<Proto.WaitForCheckpointRequest, Proto.CheckpointOutcome> AnswerWait { get; set; } = request => new()
    {
        CheckpointId = request.CheckpointId,
        Status = Proto.CheckpointStatus.Committed,
    };

    /// <summary>What GetLatestCheckpoint answers; none by default.</summary>
    public Proto.CheckpointInfo? Latest { get; set; }

    public static async Task<FakeSidecar> StartAsync(string socketPath)
    {
        var sidecar = new FakeSidecar(socketPath);
        await sidecar.app.StartAsync().ConfigureAwait(false);
        return sidecar;
    }

    /// <summary>Ends every open Attach stream as a sidecar that went away would; the trainer ids it gave stay unknown.</summary>
    public void EndAttachments()
    {
        lock (gate)
        {
            foreach (var open in openAttachments)
            {
                open.TrySetResult();
            }

            openAttachments.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        EndAttachments();
        await app.StopAsync().ConfigureAwait(false);
        await app.DisposeAsync().ConfigureAwait(false);
    }

    private async Task Attach(Proto.AttachRequest request, IServerStreamWriter<Proto.SidecarCommand> responses, ServerCallContext context)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (gate)
        {
            openAttachments.Add(ended);
        }

        Attaches.Writer.TryWrite(request);
        await responses.WriteAsync(new Proto.SidecarCommand
        {
            Attached = new Proto.Attached
            {
                TrainerId = $"fake-trainer-{Interlocked.Increment(ref attachments)}",
                GracePeriod = Duration.FromTimeSpan(TimeSpan.FromSeconds(30)),
            },
        }).ConfigureAwait(false);

        try
        {
            await ended.Task.WaitAsync(context.CancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The trainer detached.
        }
    }

    private Task<Proto.BeginCheckpointResponse> BeginCheckpoint(Proto.BeginCheckpointRequest request, ServerCallContext context)
    {
        Begins.Writer.TryWrite(request);
        return Task.FromResult(AnswerBegin(request));
    }

    private static Task<Proto.ReportDumpResponse> ReportDump(Proto.ReportDumpRequest request, ServerCallContext context) =>
        Task.FromResult(new Proto.ReportDumpResponse { CheckpointId = request.CheckpointId, RanksReported = 1, RanksExpected = 1 });

    private Task<Proto.CheckpointOutcome> WaitForCheckpoint(Proto.WaitForCheckpointRequest request, ServerCallContext context) =>
        Task.FromResult(AnswerWait(request));

    private Task<Proto.GetLatestCheckpointResponse> GetLatestCheckpoint(Proto.GetLatestCheckpointRequest request, ServerCallContext context) =>
        Task.FromResult(new Proto.GetLatestCheckpointResponse { Checkpoint = Latest });

    private static Method<TRequest, TResponse> Describe<TRequest, TResponse>(MethodType type, string name)
        where TRequest : class, IMessage<TRequest>, new()
        where TResponse : class, IMessage<TResponse>, new()
    {
        var requests = new MessageParser<TRequest>(() => new TRequest());
        var responses = new MessageParser<TResponse>(() => new TResponse());
        return new Method<TRequest, TResponse>(
            type,
            ServiceName,
            name,
            Marshallers.Create(message => message.ToByteArray(), requests.ParseFrom),
            Marshallers.Create(message => message.ToByteArray(), responses.ParseFrom));
    }

    // Binds the methods by hand: the SDK's generated code has the client side only.
    private sealed class Binding : IServiceMethodProvider<FakeSidecar>
    {
        public void OnServiceMethodDiscovery(ServiceMethodProviderContext<FakeSidecar> context)
        {
            context.AddServerStreamingMethod(
                Describe<Proto.AttachRequest, Proto.SidecarCommand>(MethodType.ServerStreaming, "Attach"),
                [],
                (sidecar, request, responses, call) => sidecar.Attach(request, responses, call));
            context.AddUnaryMethod(
                Describe<Proto.BeginCheckpointRequest, Proto.BeginCheckpointResponse>(MethodType.Unary, "BeginCheckpoint"),
                [],
                (sidecar, request, call) => sidecar.BeginCheckpoint(request, call));
            context.AddUnaryMethod(
                Describe<Proto.ReportDumpRequest, Proto.ReportDumpResponse>(MethodType.Unary, "ReportDump"),
                [],
                (_, request, call) => ReportDump(request, call));
            context.AddUnaryMethod(
                Describe<Proto.WaitForCheckpointRequest, Proto.CheckpointOutcome>(MethodType.Unary, "WaitForCheckpoint"),
                [],
                (sidecar, request, call) => sidecar.WaitForCheckpoint(request, call));
            context.AddUnaryMethod(
                Describe<Proto.GetLatestCheckpointRequest, Proto.GetLatestCheckpointResponse>(MethodType.Unary, "GetLatestCheckpoint"),
                [],
                (sidecar, request, call) => sidecar.GetLatestCheckpoint(request, call));
        }
    }
}
