using System.Diagnostics;
using System.Globalization;

namespace Checkpoint.Benchmarks;

internal sealed record SidecarDirectories(string Root, string Staging, string Storage, string Socket)
{
    public static SidecarDirectories Create(string root)
    {
        var dirs = new SidecarDirectories(root, Path.Combine(root, "staging"), Path.Combine(root, "storage"), Path.Combine(root, "sock", "s.sock"));
        Directory.CreateDirectory(dirs.Staging);
        Directory.CreateDirectory(dirs.Storage);
        Directory.CreateDirectory(Path.GetDirectoryName(dirs.Socket)!);
        return dirs;
    }
}

/// <summary>The published sidecar as a child process, its output discarded.</summary>
internal sealed class RunningSidecar : IAsyncDisposable
{
    private readonly Process _process;

    private RunningSidecar(Process process) => _process = process;

    public static RunningSidecar Launch(string binary, SidecarDirectories dirs, int keep, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.Environment["CHECKPOINT_SOCKET_PATH"] = dirs.Socket;
        info.Environment["CHECKPOINT_STAGING_DIR"] = dirs.Staging;
        info.Environment["CHECKPOINT_STORAGE_DIR"] = dirs.Storage;
        info.Environment["CHECKPOINT_METRICS_PORT"] = FreePort().ToString(CultureInfo.InvariantCulture);
        info.Environment["CHECKPOINT_KEEP"] = keep.ToString(CultureInfo.InvariantCulture);
        info.Environment["CHECKPOINT_KUBERNETES_ENABLED"] = "false";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"{binary} did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new RunningSidecar(process);
    }

    public static async Task<RunningSidecar> StartAsync(string binary, SidecarDirectories dirs, int keep, IReadOnlyDictionary<string, string>? environment = null)
    {
        var sidecar = Launch(binary, dirs, keep, environment);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(dirs.Socket))
        {
            if (sidecar._process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(10))
            {
                throw new InvalidOperationException("the sidecar did not start");
            }

            await Task.Delay(10);
        }

        return sidecar;
    }

    public double ResidentMiB() => StatusMiB("VmRSS:");

    /// <summary>The most resident memory the process has had since it started (VmHWM).</summary>
    public double PeakResidentMiB() => StatusMiB("VmHWM:");

    /// <summary>User + system CPU seconds of the whole process so far (utime + stime of /proc/pid/stat, all threads).</summary>
    public double CpuSeconds()
    {
        var stat = File.ReadAllText($"/proc/{_process.Id}/stat");
        // Fields after the command name, which is in parentheses and may itself hold spaces.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return ticks / (double)ClockTicksPerSecond;
    }

    // USER_HZ: 100 on every Linux architecture .NET runs on (sysconf(_SC_CLK_TCK)).
    private const int ClockTicksPerSecond = 100;

    private double StatusMiB(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                var kib = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
                return kib / 1024.0;
            }
        }

        throw new InvalidOperationException(field + " not found");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
