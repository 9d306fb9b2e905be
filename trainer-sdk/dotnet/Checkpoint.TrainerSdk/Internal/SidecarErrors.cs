using System.Net.Sockets;
using Grpc.Core;

namespace Checkpoint.TrainerSdk.Internal;

/// <summary>
/// Translates transport and gRPC failures into <see cref="CheckpointException"/> with a message a person can act on;
/// "Status(StatusCode=Unavailable, Detail=Error starting gRPC call...)" does not tell anyone to check the socket volume.
/// </summary>
internal sealed class SidecarErrors(string socketPath)
{
    public static bool IsTransportFailure(Exception exception) =>
        exception is IOException or HttpRequestException or SocketException;

    public CheckpointException Translate(string operation, Exception exception)
    {
        if (exception is CheckpointException checkpointException)
        {
            return checkpointException;
        }

        if (exception is RpcException rpc)
        {
            var code = (CheckpointErrorCode)(int)rpc.StatusCode;
            string detail = string.IsNullOrWhiteSpace(rpc.Status.Detail) ? rpc.StatusCode.ToString() : rpc.Status.Detail;
            return code switch
            {
                CheckpointErrorCode.Unavailable => Unreachable(operation, SocketFailure(rpc.Status.DebugException) ?? detail, exception),
                CheckpointErrorCode.InvalidArgument or CheckpointErrorCode.NotFound or CheckpointErrorCode.FailedPrecondition =>
                    new CheckpointException($"The checkpoint sidecar rejected {operation}: {detail}", code, exception),
                CheckpointErrorCode.DeadlineExceeded =>
                    new CheckpointException($"{operation} did not finish in time: {detail}", code, exception),
                CheckpointErrorCode.Unimplemented =>
                    new CheckpointException(
                        $"The checkpoint sidecar does not implement {operation}; the trainer SDK and sidecar versions do not match ({detail}).",
                        code,
                        exception),
                _ => new CheckpointException($"{operation} failed ({rpc.StatusCode}): {detail}", code, exception),
            };
        }

        return Unreachable(operation, SocketFailure(exception) ?? exception.Message, exception);
    }

    // grpc-dotnet's detail names "localhost:80", the placeholder address; the socket error underneath is what helps.
    private static string? SocketFailure(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (current is SocketException socketException)
            {
                return socketException.Message;
            }
        }

        return null;
    }

    public CheckpointException Unreachable(string operation, string detail, Exception? exception)
    {
        string directory = Path.GetDirectoryName(socketPath) ?? socketPath;
        string message = File.Exists(socketPath)
            ? $"{operation} failed: the checkpoint sidecar socket {socketPath} exists but nothing answers on it ({detail}). " +
              "Check that the sidecar container is running and healthy (kubectl logs <pod> -c <sidecar container>)."
            : $"{operation} failed: there is no checkpoint sidecar socket at {socketPath} ({detail}). " +
              "Check that the sidecar container is running, that the volume holding the socket is mounted at " +
              $"{directory} in this container too, and that {CheckpointClientOptions.SocketPathEnvironmentVariable} " +
              "names the same path in both containers.";
        return new CheckpointException(message, CheckpointErrorCode.Unavailable, exception);
    }
}
