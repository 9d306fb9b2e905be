using System.Net.Sockets;
using Checkpoint.Protos.V1;
using Checkpoint.Sidecar.Configuration;
using Grpc.Core;
using Grpc.Net.Client;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// <c>checkpoint-sidecar prestop</c>: what a preStop hook execs. Tells the running sidecar over its
/// socket that the pod is terminating and blocks until the preemption checkpoint is committed, has
/// failed, or its deadline is near; the kubelet sends SIGTERM only after the hook returns. Needed
/// for a native sidecar (Kubernetes signals it only after the trainer exits) and useful on the
/// trainer container, to hold its SIGTERM back until its state is safe. Running it twice joins the
/// flush under way.
/// </summary>
internal static class PreStopCommand
{
    public const string Name = "prestop";

    /// <returns>0 committed or nothing to flush; 1 failed or unreachable; 2 bad usage.</returns>
    public static async Task<int> RunAsync(string[] args)
    {
        var socketPath = SocketPathFromEnvironment();
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--socket" && i + 1 < args.Length)
            {
                socketPath = args[++i];
            }
            else
            {
                await Console.Error.WriteLineAsync($"checkpoint-sidecar prestop: unknown argument '{args[i]}'; usage: checkpoint-sidecar prestop [--socket PATH]")
                    .ConfigureAwait(false);
                return 2;
            }
        }

        try
        {
            using var channel = UnixSocketChannel(socketPath);
            var client = new CheckpointService.CheckpointServiceClient(channel);
            var ticket = await client.NotifyTerminationAsync(
                new NotifyTerminationRequest { Source = TerminationSource.PrestopHook },
                deadline: DateTime.UtcNow.AddSeconds(10));
            if (string.IsNullOrEmpty(ticket.CheckpointId))
            {
                Console.WriteLine("checkpoint-sidecar prestop: no trainer attached; nothing to flush");
                return 0;
            }

            Console.WriteLine($"checkpoint-sidecar prestop: waiting for preemption checkpoint {ticket.CheckpointId} (deadline {ticket.Deadline?.ToDateTime():O})");
            // Return just after the sidecar's own deadline at the latest: the hook must not eat the
            // time the kubelet leaves for SIGTERM handling.
            var until = ticket.Deadline?.ToDateTime().AddSeconds(1) ?? DateTime.UtcNow.AddMinutes(5);
            var outcome = await client.WaitForCheckpointAsync(
                new WaitForCheckpointRequest { CheckpointId = ticket.CheckpointId }, deadline: until);
            Console.WriteLine($"checkpoint-sidecar prestop: checkpoint {outcome.CheckpointId} {outcome.Status}{(outcome.Error.Length > 0 ? ": " + outcome.Error : "")}");
            return outcome.Status == CheckpointStatus.Committed ? 0 : 1;
        }
        catch (RpcException e)
        {
            await Console.Error.WriteLineAsync(e.StatusCode == StatusCode.DeadlineExceeded
                ? "checkpoint-sidecar prestop: the deadline passed before the checkpoint was committed"
                : $"checkpoint-sidecar prestop: the sidecar at {socketPath} did not answer ({e.StatusCode}: {e.Status.Detail}); is it running and is CHECKPOINT_SOCKET_PATH the same as the sidecar's?")
                .ConfigureAwait(false);
            return 1;
        }
    }

    /// <summary>The sidecar's socket as the container's environment names it (the injected containers share it).</summary>
    internal static string SocketPathFromEnvironment() =>
        Environment.GetEnvironmentVariable("CHECKPOINT_SOCKET_PATH") is { Length: > 0 } fromEnv ? fromEnv : SidecarOptions.DefaultSocketPath;

    /// <summary>A gRPC channel to the sidecar over its Unix socket (also used by <c>drill</c>).</summary>
    internal static GrpcChannel UnixSocketChannel(string socketPath)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }
}
