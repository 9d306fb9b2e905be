using System.Net.Sockets;
using System.Runtime.InteropServices;
using Checkpoint.Sidecar.Flush;
using Grpc.Core;
using Microsoft.AspNetCore.Connections.Features;

namespace Checkpoint.Sidecar.Grpc;

/// <summary>Who is calling: the process on the other end of the call's Unix socket connection, as the kernel tells it.</summary>
internal static class CallerProcess
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    public static TrainerPeer Of(ServerCallContext call)
    {
        var http = call.GetHttpContext();
        return new TrainerPeer(PeerProcessId(http.Features.Get<IConnectionSocketFeature>()?.Socket), http.Connection.Id);
    }

    /// <summary>The pid from SO_PEERCRED: recorded by the kernel at connect, so the peer cannot claim another.</summary>
    private static int? PeerProcessId(Socket? socket)
    {
        if (socket is not { AddressFamily: AddressFamily.Unix })
        {
            return null;
        }

        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        Span<byte> credentials = stackalloc byte[12];
        try
        {
            if (socket.GetRawSocketOption(SolSocket, SoPeerCred, credentials) < sizeof(int))
            {
                return null;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return null;
        }

        // 0: the peer lives in a pid namespace the sidecar cannot see into (another container of the pod).
        var pid = MemoryMarshal.Read<int>(credentials);
        return pid > 0 ? pid : null;
    }
}
