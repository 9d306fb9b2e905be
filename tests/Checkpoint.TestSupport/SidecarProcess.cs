using System.Globalization;
using System.Text.RegularExpressions;
using Checkpoint.TrainerSdk;

namespace Checkpoint.TestSupport;

/// <summary>The published Native AOT sidecar, started as a real process on a test's directories.</summary>
public sealed class SidecarProcess : IAsyncDisposable
{
    /// <summary>Names the metrics port the sidecar bound (it is started with port 0: any free port).</summary>
    private const string ReadyLine = @"Checkpoint sidecar ready: .* metrics on http://\*:(\d+)/metrics";

    private SidecarProcess(ObservedProcess process, string socketPath, int metricsPort)
    {
        Process = process;
        SocketPath = socketPath;
        MetricsPort = metricsPort;
    }

    public ObservedProcess Process { get; }

    public string SocketPath { get; }

    public int MetricsPort { get; }

    /// <summary>
    /// The environment a pod spec would set, for the given directories. The metrics port is 0: the
    /// sidecar binds a free one and names it, so parallel tests never race for a port picked ahead.
    /// </summary>
    public static Dictionary<string, string> Environment(TestDirectories dirs, string? storage = null) => new()
    {
        ["CHECKPOINT_SOCKET_PATH"] = dirs.SocketPath,
        ["CHECKPOINT_STAGING_DIR"] = dirs.Staging,
        ["CHECKPOINT_STORAGE_DIR"] = storage ?? dirs.Storage,
        ["CHECKPOINT_METRICS_PORT"] = "0",
        ["CHECKPOINT_GRACE_PERIOD_SECONDS"] = "30",
        ["CHECKPOINT_SAFETY_MARGIN_SECONDS"] = "1",
        ["CHECKPOINT_JOB_NAME"] = "it-job",
        ["CHECKPOINT_KEEP"] = "3",
        ["CHECKPOINT_KUBERNETES_ENABLED"] = "false",
    };

    public static async Task<SidecarProcess> StartAsync(
        TestDirectories dirs, string? storage = null, IReadOnlyDictionary<string, string>? overrides = null)
    {
        var environment = Environment(dirs, storage);
        foreach (var (key, value) in overrides ?? new Dictionary<string, string>())
        {
            environment[key] = value;
        }

        var process = ObservedProcess.Start("sidecar", RepoPaths.SidecarBinary, [], environment);
        var ready = await process.WaitForLineAsync(ReadyLine).ConfigureAwait(false);
        return new SidecarProcess(process, environment["CHECKPOINT_SOCKET_PATH"], int.Parse(ready.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>An SDK client in the test process; SIGTERM handling off so the test host is never exited.</summary>
    public Task<CheckpointClient> ConnectAsync(int rank = 0) =>
        CheckpointClient.ConnectAsync(new CheckpointClientOptions
        {
            SocketPath = SocketPath,
            Rank = rank,
            Description = $"integration test rank {rank}",
            HandleTermination = false,
        });

    /// <summary>
    /// Closes the client and waits until the sidecar has seen its trainer leave, as a trainer process
    /// that exits does. The sidecar learns of a closed stream a moment after the client is gone; a
    /// SIGTERM in between would start a preemption flush for a trainer that is about to leave.
    /// </summary>
    public async Task DetachAsync(CheckpointClient client)
    {
        var trainerId = client.TrainerId;
        await client.DisposeAsync().ConfigureAwait(false);
        await Process.WaitForLineAsync($@"Trainer {Regex.Escape(trainerId)} \(rank \d+\) detached").ConfigureAwait(false);
    }

    public async Task<string> ScrapeMetricsAsync()
    {
        using var http = new HttpClient();
        return await http.GetStringAsync(new Uri($"http://127.0.0.1:{MetricsPort}/metrics")).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => Process.DisposeAsync();
}
