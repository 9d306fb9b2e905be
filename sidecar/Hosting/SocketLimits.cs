using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// What a pod's trainers need of the socket, and no more. A pod has up to 8 ranks and a few tools (the
/// prestop command, a status probe); each holds one connection with an Attach stream and a few calls
/// on it. Whatever a process on the socket does beyond that is refused or cut off, so connections
/// that stall cost bounded memory for a bounded time.
/// </summary>
/// <remarks>
/// Worst case, held for about <see cref="RequestBodyTime"/>: every connection with one request body
/// of CHECKPOINT_MAX_REPORT_KIB in (<see cref="RequestBodyGate"/> admits one at a time) and each of its
/// other streams holding one stream window: 32 × (2 MiB + 15 × 64 KiB) ≈ 94 MiB with the defaults.
/// </remarks>
internal static class SocketLimits
{
    /// <summary>Per endpoint; the limit also applies to the metrics port, where a scraper and two probes need three.</summary>
    public const int MaxConnections = 32;

    /// <summary>An SDK holds its Attach stream, a call or two and a wait per checkpoint in flight.</summary>
    public const int MaxStreamsPerConnection = 16;

    /// <summary>What a stream waiting for its turn to send a body may hold; the HTTP/2 minimum, near enough.</summary>
    public const int StreamWindowBytes = 64 * 1024;

    /// <summary>
    /// Twice what the streams of a connection can hold while they wait their turn: Kestrel does not
    /// enforce the request body data rate while the connection window runs low.
    /// </summary>
    public const int ConnectionWindowBytes = 2 * MaxStreamsPerConnection * StreamWindowBytes;

    /// <summary>A request body not in within this (a trainer's arrives in milliseconds) costs the caller its connection.</summary>
    public static readonly TimeSpan RequestBodyTime = TimeSpan.FromSeconds(5);

    /// <summary>A connection with no calls on it (or silent from the start) is closed after this; a trainer keeps its Attach stream open.</summary>
    public static readonly TimeSpan IdleConnectionTime = TimeSpan.FromSeconds(10);

    /// <summary>Headers come in one go from any real client.</summary>
    public static readonly TimeSpan RequestHeadersTime = TimeSpan.FromSeconds(5);

    public static void Apply(KestrelServerLimits limits, int maxRequestBytes)
    {
        limits.MaxConcurrentConnections = MaxConnections;
        limits.KeepAliveTimeout = IdleConnectionTime;
        limits.RequestHeadersTimeout = RequestHeadersTime;
        // Kestrel judges the rate averaged since the body began: at this rate even the largest allowed
        // body that stops one byte short is cut off once RequestBodyTime has passed.
        limits.MinRequestBodyDataRate = new MinDataRate(bytesPerSecond: maxRequestBytes / RequestBodyTime.TotalSeconds, gracePeriod: RequestBodyTime);
        limits.Http2.MaxStreamsPerConnection = MaxStreamsPerConnection;
        limits.Http2.InitialStreamWindowSize = StreamWindowBytes;
        limits.Http2.InitialConnectionWindowSize = ConnectionWindowBytes;
    }
}
