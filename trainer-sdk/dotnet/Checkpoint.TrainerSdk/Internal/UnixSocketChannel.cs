using System.Net.Sockets;
using Grpc.Net.Client;

namespace Checkpoint.TrainerSdk.Internal;

/// <summary>gRPC over a Unix domain socket, the grpc-dotnet "transporter" way: HTTP/2 in clear text over a socket we connect ourselves.</summary>
internal static class UnixSocketChannel
{
    public static GrpcChannel Create(string socketPath, TimeSpan connectTimeout)
    {
        var endPoint = new UnixDomainSocketEndPoint(socketPath);
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = connectTimeout,
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },

            // The Attach stream idles for hours between dumps; pings notice a sidecar that died without closing the socket.
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
        };

        // The host name is never resolved: the connect callback above decides where bytes go.
        return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }
}
