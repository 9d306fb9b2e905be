using System.Net.Sockets;

namespace Checkpoint.TrainerSdk.Internal;

/// <summary>
/// Waits for the sidecar's socket to accept a connection. A regular (not native) sidecar container starts beside the trainer,
/// not before it, so the trainer may look before the socket exists, or while a file left by the previous sidecar has no
/// listener yet; both are waited out, up to <see cref="CheckpointClientOptions.SocketWaitTimeout"/>.
/// </summary>
internal static class SocketWait
{
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan LongestRetry = TimeSpan.FromSeconds(1);

    /// <summary>Returns once a connection to the socket succeeds; the probe connection is closed at once.</summary>
    /// <exception cref="CheckpointException">The socket did not accept a connection in time, or refused it for a reason time does not mend.</exception>
    public static async Task UntilAcceptingAsync(
        CheckpointClientOptions options, SidecarErrors errors, Action<string> log, CancellationToken cancellationToken)
    {
        var time = options.TimeProvider;
        var endPoint = new UnixDomainSocketEndPoint(options.SocketPath);
        var giveUpAt = time.GetUtcNow() + options.SocketWaitTimeout;
        var retry = FirstRetry;
        while (true)
        {
            SocketException failure;
            using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                try
                {
                    await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
                    return;
                }
                catch (SocketException e) when (IsNotYetThere(e))
                {
                    failure = e;
                }
                catch (SocketException e)
                {
                    // Permission denied and the like: the sidecar is there, and waiting will not let this process in.
                    throw errors.Translate("Attach", e);
                }
            }

            var left = giveUpAt - time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                throw NotThere(options, errors, failure);
            }

            if (retry == FirstRetry)
            {
                // Once: a trainer that seems stuck at start says what it waits for.
                string seconds = options.SocketWaitTimeout.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);
                log($"waiting up to {seconds} s for the checkpoint sidecar socket {options.SocketPath} ({failure.Message})");
            }

            await Task.Delay(retry < left ? retry : left, time, cancellationToken).ConfigureAwait(false);
            retry = retry * 2 < LongestRetry ? retry * 2 : LongestRetry;
        }
    }

    // ENOENT (no file, or no directory yet) and ECONNREFUSED (a file nobody listens on).
    private static bool IsNotYetThere(SocketException e) =>
        e.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.ConnectionRefused;

    private static CheckpointException NotThere(CheckpointClientOptions options, SidecarErrors errors, SocketException failure)
    {
        string seconds = options.SocketWaitTimeout.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);
        return errors.Unreachable(
            "Attach",
            $"{failure.Message}; waited {seconds} s for the socket to accept a connection, set by " +
            $"{CheckpointClientOptions.SocketWaitTimeoutEnvironmentVariable} or {nameof(CheckpointClientOptions)}.{nameof(CheckpointClientOptions.SocketWaitTimeout)}",
            failure);
    }
}
