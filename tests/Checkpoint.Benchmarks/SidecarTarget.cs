using System.Diagnostics;
using System.Text.Json;
using Checkpoint.TrainerSdk;

namespace Checkpoint.Benchmarks;

/// <summary>
/// What one timed contender took: wall seconds, and the CPU seconds (user + system) it spent doing it; for a
/// sidecar also its own copy and verify phases (NaN for the others).
/// </summary>
internal readonly record struct Measurement(double Seconds, double CpuSeconds, double CopySeconds = double.NaN, double VerifySeconds = double.NaN);

/// <summary>
/// A published sidecar with one SDK client attached, flushing staged files. The files are hard-linked into
/// the checkpoint's staging directory before the clock starts: the same inode, so the same page-cache state
/// the caller prepared (warm or cold), and no copy. The sidecar unlinks its staging after the flush; the
/// originals stay for the next contender.
/// </summary>
internal sealed class SidecarTarget : IAsyncDisposable
{
    private readonly RunningSidecar _sidecar;
    private readonly CheckpointClient _client;
    private readonly string _root;
    private long _step;

    private SidecarTarget(RunningSidecar sidecar, CheckpointClient client, string root)
    {
        _sidecar = sidecar;
        _client = client;
        _root = root;
    }

    public RunningSidecar Process => _sidecar;

    /// <param name="verify">CHECKPOINT_VERIFY, or null for the sidecar's default.</param>
    public static async Task<SidecarTarget> StartAsync(string binary, string root, string? verify)
    {
        var dirs = SidecarDirectories.Create(root);
        var environment = verify is null ? null : new Dictionary<string, string> { ["CHECKPOINT_VERIFY"] = verify };
        var sidecar = await RunningSidecar.StartAsync(binary, dirs, keep: 1, environment);
        try
        {
            var client = await CheckpointClient.ConnectAsync(new CheckpointClientOptions
            {
                SocketPath = dirs.Socket,
                HandleTermination = false,
                Description = "benchmark",
            });
            return new SidecarTarget(sidecar, client, root);
        }
        catch
        {
            await sidecar.DisposeAsync();
            throw;
        }
    }

    /// <summary>Times CompleteDump to the committed outcome; CPU is the sidecar's /proc/pid/stat delta over the same span.</summary>
    public async Task<(Measurement Measurement, CheckpointOutcome Outcome)> FlushAsync(IReadOnlyList<string> files, CheckpointReason reason)
    {
        var step = ++_step;
        var dump = await _client.BeginCheckpointAsync(step, reason);
        var rank = Path.Combine(dump.StagingDirectory, "rank-0");
        Directory.CreateDirectory(rank);
        foreach (var file in files)
        {
            Native.HardLink(file, Path.Combine(rank, Path.GetFileName(file)));
        }

        var relative = files.Select(f => Path.Combine("rank-0", Path.GetFileName(f))).ToList();
        var cpuBefore = _sidecar.CpuSeconds();
        var clock = Stopwatch.StartNew();
        await _client.CompleteDumpAsync(dump, step, relative, null);
        var outcome = await _client.WaitForCheckpointAsync(dump.CheckpointId);
        var elapsed = clock.Elapsed.TotalSeconds;
        var cpu = _sidecar.CpuSeconds() - cpuBefore;
        if (outcome.Status != CheckpointStatus.Committed)
        {
            throw new InvalidOperationException($"flush {dump.CheckpointId} did not commit: {outcome.Error}");
        }

        var phases = outcome.Timings;
        return (new Measurement(elapsed, cpu, phases?.Copy.TotalSeconds ?? double.NaN, phases?.Verify.TotalSeconds ?? double.NaN), outcome);
    }

    /// <summary>
    /// How many of a committed checkpoint's files got each verification ("verification" of each file entry of
    /// the step's sealed shards; "unrecorded" where absent, as before the copier recorded it): a read-back flush
    /// that quietly committed on the write-side hash would otherwise be timed as a read-back.
    /// </summary>
    /// <param name="podDirectory">The outcome's directory: the pod's directory inside the step's.</param>
    public static IReadOnlyDictionary<string, int> Verifications(string podDirectory)
    {
        var step = Path.GetDirectoryName(podDirectory)!;
        var counts = new Dictionary<string, int>();
        foreach (var json in Directory.EnumerateFiles(Path.Combine(step, "shards"), "*.json"))
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(json));
            Count(document.RootElement, counts);
        }

        return counts;
    }

    private static void Count(JsonElement element, Dictionary<string, int> counts)
    {
        if (element.ValueKind == JsonValueKind.Object)
        {
            if (element.TryGetProperty("xxh128", out _))
            {
                var kind = element.TryGetProperty("verification", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "unrecorded";
                counts[kind] = counts.GetValueOrDefault(kind) + 1;
            }

            foreach (var property in element.EnumerateObject())
            {
                Count(property.Value, counts);
            }
        }
        else if (element.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in element.EnumerateArray())
            {
                Count(item, counts);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _client.DisposeAsync();
        await _sidecar.DisposeAsync();
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
