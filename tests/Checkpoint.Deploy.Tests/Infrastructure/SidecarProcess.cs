using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Deploy.Tests.Infrastructure;

/// <summary>The published Native AOT sidecar as a real process on private directories (after the integration tests' helper).</summary>
internal sealed class SidecarProcess : IAsyncDisposable
{
    private readonly string _root;

    private SidecarProcess(string root, ObservedProcess process, int metricsPort)
    {
        _root = root;
        Process = process;
        MetricsPort = metricsPort;
    }

    public ObservedProcess Process { get; }

    public int MetricsPort { get; }

    public string SocketPath => Path.Combine(_root, "sock", "sidecar.sock");

    public static async Task<SidecarProcess> StartAsync()
    {
        // Short root: a Unix socket path may not exceed 107 bytes.
        var root = Path.Combine(Path.GetTempPath(), "ckpt-dt-" + Guid.NewGuid().ToString("N")[..10]);
        foreach (var dir in new[] { "staging", "storage", "sock" })
        {
            Directory.CreateDirectory(Path.Combine(root, dir));
        }

        var port = FreeTcpPort();
        var environment = new Dictionary<string, string>
        {
            ["CHECKPOINT_SOCKET_PATH"] = Path.Combine(root, "sock", "sidecar.sock"),
            ["CHECKPOINT_STAGING_DIR"] = Path.Combine(root, "staging"),
            ["CHECKPOINT_STORAGE_DIR"] = Path.Combine(root, "storage"),
            ["CHECKPOINT_METRICS_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = "30",
            ["CHECKPOINT_JOB_NAME"] = "deploy-test",
            ["CHECKPOINT_KUBERNETES_ENABLED"] = "false",
        };
        var process = ObservedProcess.Start("sidecar", RepoPaths.SidecarBinary, [], environment);
        var sidecar = new SidecarProcess(root, process, port);
        await process.WaitForLineAsync(Regex.Escape("Checkpoint sidecar ready")).ConfigureAwait(false);
        return sidecar;
    }

    /// <summary>One periodic checkpoint of two files through the C# trainer SDK, as a trainer would do it.</summary>
    public static async Task<CheckpointOutcome> FlushOnceAsync(CheckpointClient client, long step)
    {
        var dump = await client.BeginCheckpointAsync(step, CheckpointReason.Periodic).ConfigureAwait(false);
        var files = new List<string>();
        foreach (var (name, size) in new[] { ("model.bin", 3 << 20), ("optimizer.bin", 1 << 20) })
        {
            var relative = CheckpointLayout.RankFile(client.Rank, name);
            var full = Path.Combine(dump.StagingDirectory, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            var bytes = new byte[size];
            new Random(size).NextBytes(bytes);
            await File.WriteAllBytesAsync(full, bytes).ConfigureAwait(false);
            files.Add(relative);
        }

        await client.CompleteDumpAsync(dump, step, files, new Dictionary<string, string>()).ConfigureAwait(false);
        return await client.WaitForCheckpointAsync(dump.CheckpointId).ConfigureAwait(false);
    }

    public Task<CheckpointClient> ConnectAsync() =>
        CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = SocketPath,
            Rank = 0,
            Description = "deploy test",
            HandleTermination = false,
        });

    public async Task<string> ScrapeMetricsAsync()
    {
        using var http = new HttpClient();
        return await http.GetStringAsync(new Uri($"http://127.0.0.1:{MetricsPort}/metrics")).ConfigureAwait(false);
    }

    public static int FreeTcpPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        await Process.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(_root, recursive: true);
    }
}
