using Checkpoint.TrainerSdk.Internal;
using Grpc.Core;
using Grpc.Net.Client;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// A gRPC client that sends whatever bytes a test gives it as a checkpoint.v1 request message, as a
/// hostile or broken process on the socket could.
/// </summary>
internal static class RawGrpc
{
    private static readonly Marshaller<byte[]> Bytes = Marshallers.Create(bytes => bytes, bytes => bytes);

    public static GrpcChannel Channel(string socketPath) => UnixSocketChannel.Create(socketPath, TimeSpan.FromSeconds(10));

    /// <summary>Calls <paramref name="methodName"/> with <paramref name="payload"/> as the request message; the call must fail.</summary>
    public static async Task<RpcException> FailingUnaryCallAsync(string socketPath, string methodName, byte[] payload, Metadata? headers = null)
    {
        using var channel = Channel(socketPath);
        var method = new Method<byte[], byte[]>(MethodType.Unary, "checkpoint.v1.CheckpointService", methodName, Bytes, Bytes);
        var options = new CallOptions(headers, deadline: DateTime.UtcNow + ObservedProcess.DefaultTimeout);
        using var call = channel.CreateCallInvoker().AsyncUnaryCall(method, host: null, options, payload);
        return await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync);
    }
}
