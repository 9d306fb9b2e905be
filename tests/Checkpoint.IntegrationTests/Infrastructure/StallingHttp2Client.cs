using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Checkpoint.IntegrationTests.Infrastructure;

/// <summary>
/// A hostile client on the sidecar's socket, speaking HTTP/2 frame by frame: it opens ReportDump calls,
/// declares a request message, sends all of it but the last byte as fast as flow control lets it,
/// then goes quiet without closing anything. It answers the frames HTTP/2 requires (SETTINGS, PING),
/// so the only thing wrong with it is the stalled bodies.
/// </summary>
internal sealed class StallingHttp2Client : IAsyncDisposable
{
    private const int FrameHeaderSize = 9;
    private const int MaxFrameSize = 16384;
    private const int DefaultWindow = 65535;
    private const byte Data = 0x0, Headers = 0x1, RstStream = 0x3, Settings = 0x4, Ping = 0x6, GoAway = 0x7, WindowUpdate = 0x8;
    private const byte EndStream = 0x1, EndHeaders = 0x4, Ack = 0x1;
    private const ushort SettingsInitialWindowSize = 0x4;

    private static readonly byte[] Preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

    private readonly Socket _socket;
    private readonly Dictionary<int, OpenStream> _streams = [];
    private readonly TaskCompletionSource _closedByServer = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private long _connectionWindow = DefaultWindow;
    private Task _reader = Task.CompletedTask;

    private StallingHttp2Client(Socket socket) => _socket = socket;

    /// <summary>Completes when the sidecar has closed (or refused) the connection.</summary>
    public Task ClosedByServer => _closedByServer.Task;

    /// <summary>
    /// Connects and starts <paramref name="streams"/> calls, each declaring a message of
    /// <paramref name="declaredLength"/> bytes; returns once the first window of each is on its way.
    /// </summary>
    public static async Task<StallingHttp2Client> OpenAsync(string socketPath, string method, int streams, int declaredLength)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var client = new StallingHttp2Client(socket);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
            var opening = new List<byte>(Preface);
            opening.AddRange(Frame(Settings, 0, 0, []));
            for (var i = 0; i < streams; i++)
            {
                var id = (2 * i) + 1;
                client._streams[id] = new OpenStream(declaredLength);
                opening.AddRange(Frame(Headers, EndHeaders, id, RequestHeaders(method)));
            }

            await socket.SendAsync(opening.ToArray(), SocketFlags.None);
            await client.PumpAsync();
            client._reader = client.ReadFramesAsync();
        }
        catch (SocketException)
        {
            // Refused: the sidecar closed it at once, which is what it does beyond its connection limit.
            client._closedByServer.TrySetResult();
        }

        return client;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _socket.Dispose();
        await _reader;
        _stop.Dispose();
    }

    private async Task ReadFramesAsync()
    {
        var header = new byte[FrameHeaderSize];
        try
        {
            while (true)
            {
                if (!await ReceiveExactlyAsync(header))
                {
                    break;
                }

                var length = (header[0] << 16) | (header[1] << 8) | header[2];
                var type = header[3];
                var flags = header[4];
                var streamId = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(5)) & 0x7fffffff;
                var payload = new byte[length];
                if (!await ReceiveExactlyAsync(payload))
                {
                    break;
                }

                if (type == GoAway)
                {
                    break;
                }

                await HandleAsync(type, flags, streamId, payload);
                await PumpAsync();
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            if (_stop.IsCancellationRequested)
            {
                return;
            }
        }

        _closedByServer.TrySetResult();
    }

    private async Task HandleAsync(byte type, byte flags, int streamId, byte[] payload)
    {
        switch (type)
        {
            case Settings when (flags & Ack) == 0:
                for (var i = 0; i + 6 <= payload.Length; i += 6)
                {
                    if (BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(i)) == SettingsInitialWindowSize)
                    {
                        var size = (int)BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i + 2));
                        foreach (var stream in _streams.Values)
                        {
                            stream.Window += size - stream.InitialWindow;
                            stream.InitialWindow = size;
                        }
                    }
                }

                await _socket.SendAsync(Frame(Settings, Ack, 0, []), SocketFlags.None, _stop.Token);
                break;
            case Ping when (flags & Ack) == 0:
                await _socket.SendAsync(Frame(Ping, Ack, 0, payload), SocketFlags.None, _stop.Token);
                break;
            case WindowUpdate:
                var increment = BinaryPrimitives.ReadInt32BigEndian(payload) & 0x7fffffff;
                if (streamId == 0)
                {
                    _connectionWindow += increment;
                }
                else if (_streams.TryGetValue(streamId, out var updated))
                {
                    updated.Window += increment;
                }

                break;
            case RstStream:
                _streams.Remove(streamId);
                break;
            case Headers or Data when (flags & EndStream) != 0:
                // The call ended (for example refused with a gRPC status): nothing more to send on it.
                _streams.Remove(streamId);
                break;
        }
    }

    /// <summary>Sends on every stream as much of its body as the windows allow.</summary>
    private async Task PumpAsync()
    {
        foreach (var (id, stream) in _streams)
        {
            while (stream.Unsent > 0 && stream.Window > 0 && _connectionWindow > 0)
            {
                var size = (int)Math.Min(Math.Min(stream.Unsent, MaxFrameSize), Math.Min(stream.Window, _connectionWindow));
                var chunk = new byte[size];
                if (stream.Sent == 0)
                {
                    // The gRPC message header: not compressed, then the declared length.
                    BinaryPrimitives.WriteInt32BigEndian(chunk.AsSpan(1), stream.DeclaredLength);
                }

                await _socket.SendAsync(Frame(Data, 0, id, chunk), SocketFlags.None, _stop.Token);
                stream.Sent += size;
                stream.Window -= size;
                _connectionWindow -= size;
            }
        }
    }

    private async Task<bool> ReceiveExactlyAsync(byte[] buffer)
    {
        var received = 0;
        while (received < buffer.Length)
        {
            var read = await _socket.ReceiveAsync(buffer.AsMemory(received), SocketFlags.None, _stop.Token);
            if (read == 0)
            {
                return false;
            }

            received += read;
        }

        return true;
    }

    private static byte[] Frame(byte type, byte flags, int streamId, byte[] payload)
    {
        var frame = new byte[FrameHeaderSize + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(5), streamId);
        payload.CopyTo(frame, FrameHeaderSize);
        return frame;
    }

    /// <summary>HPACK, each field a literal without indexing (no table, no Huffman coding): the simplest valid encoding.</summary>
    private static byte[] RequestHeaders(string method)
    {
        var block = new List<byte>();
        foreach (var (name, value) in new[]
                 {
                     (":method", "POST"), (":scheme", "http"), (":path", $"/checkpoint.v1.CheckpointService/{method}"),
                     (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
                 })
        {
            block.Add(0x00);
            block.Add((byte)name.Length);
            block.AddRange(Encoding.ASCII.GetBytes(name));
            block.Add((byte)value.Length);
            block.AddRange(Encoding.ASCII.GetBytes(value));
        }

        return block.ToArray();
    }

    private sealed class OpenStream(int declaredLength)
    {
        public int DeclaredLength { get; } = declaredLength;

        // The 5-byte gRPC header and all of the message but its last byte.
        public long Unsent => 5 + DeclaredLength - 1 - Sent;

        public long Sent { get; set; }

        public long Window { get; set; } = DefaultWindow;

        public int InitialWindow { get; set; } = DefaultWindow;
    }
}
