using System.Diagnostics;
using System.Globalization;

namespace Checkpoint.Benchmarks;

/// <summary>
/// One simulated pod of a job: the published sidecar as its own process, with its own socket, staging
/// directory, pod name and metrics port (0), sharing the storage directory and job name with every other
/// pod. Its output goes to a log file (read only when something goes wrong). Optionally run under
/// strace, counting the calls it makes on the storage directory.
/// </summary>
internal sealed class SimulatedPod : IAsyncDisposable
{
    /// <summary>
    /// Every call that takes a path or names an entry (open, stat, mkdir, link, rename, unlink…), fstat,
    /// directory reads and fsyncs. Reads and writes of file contents are not traced: they would stop the
    /// sidecar on every socket read too, and they are data, not metadata.
    /// </summary>
    public const string TracedCalls = "%file,%fstat,%stat,%lstat,getdents64,fsync,fdatasync";

    private readonly Process _process;

    private SimulatedPod(Process process, int index, string name, string socket, string staging, string log, string? trace)
    {
        _process = process;
        Index = index;
        Name = name;
        Socket = socket;
        Staging = staging;
        Log = log;
        TraceFile = trace;
    }

    public int Index { get; }

    public string Name { get; }

    public string Socket { get; }

    public string Staging { get; }

    public string Log { get; }

    /// <summary>strace's output (after <see cref="DisposeAsync"/>), or null when not traced.</summary>
    public string? TraceFile { get; }

    public static SimulatedPod Launch(string binary, string root, int index, string storage, string podNamespace, string jobName, bool trace)
    {
        var name = "pod-" + index.ToString("D3", CultureInfo.InvariantCulture);
        var directory = Path.Combine(root, name);
        var staging = Path.Combine(directory, "staging");
        var socket = Path.Combine(directory, "s.sock");
        var log = Path.Combine(directory, "sidecar.log");
        var traceFile = trace ? Path.Combine(directory, "strace.txt") : null;
        Directory.CreateDirectory(staging);

        // A working directory of its own, empty, as a container has: one that held the shared storage (or
        // the other pods' logs) would show whatever the process does to what lies under its working directory.
        var workingDirectory = Path.Combine(directory, "cwd");
        Directory.CreateDirectory(workingDirectory);

        // bash only sets up the log redirection and then execs: the pid is the sidecar's (or strace's).
        var info = new ProcessStartInfo("bash") { UseShellExecute = false, WorkingDirectory = workingDirectory };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("exec \"$@\" >\"$BENCH_SIDECAR_LOG\" 2>&1");
        info.ArgumentList.Add(name);
        if (traceFile is not null)
        {
            foreach (var arg in new[] { "strace", "-f", "--seccomp-bpf", "-qq", "-y", "-ttt", "-e", "trace=" + TracedCalls, "-o", traceFile })
            {
                info.ArgumentList.Add(arg);
            }
        }

        info.ArgumentList.Add(binary);
        info.Environment["BENCH_SIDECAR_LOG"] = log;
        info.Environment["CHECKPOINT_SOCKET_PATH"] = socket;
        info.Environment["CHECKPOINT_STAGING_DIR"] = staging;
        info.Environment["CHECKPOINT_STORAGE_DIR"] = storage;
        info.Environment["CHECKPOINT_METRICS_PORT"] = "0";
        info.Environment["CHECKPOINT_KUBERNETES_ENABLED"] = "false";
        info.Environment["CHECKPOINT_JOB_NAME"] = jobName;
        info.Environment["POD_NAME"] = name;
        info.Environment["POD_NAMESPACE"] = podNamespace;
        info.Environment["CHECKPOINT_JOB_COMMIT_TIMEOUT_SECONDS"] = "300";
        var process = Process.Start(info) ?? throw new InvalidOperationException($"{binary} did not start");
        return new SimulatedPod(process, index, name, socket, staging, log, traceFile);
    }

    /// <summary>Waits until the sidecar's socket is in place (it is renamed there once it listens).</summary>
    public async Task WaitReadyAsync(TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (!File.Exists(Socket))
        {
            if (_process.HasExited || clock.Elapsed > limit)
            {
                throw new InvalidOperationException($"the sidecar of {Name} did not start within {limit.TotalSeconds:F0} s; its log ends:\n{LogTail()}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>User + system CPU time of the sidecar process (all its threads) so far, in clock ticks.</summary>
    public long CpuTicks() => ProcStat.CpuTicks(_process.Id);

    public string LogTail(int lines = 20)
    {
        try
        {
            return string.Join('\n', File.ReadLines(Log).TakeLast(lines));
        }
        catch (IOException e)
        {
            return $"(no log: {e.Message})";
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            if (TraceFile is not null)
            {
                // Killing strace would only detach it and leave the sidecar running: kill the sidecar, and
                // strace ends on its own once it has written the last of its output.
                foreach (var child in ProcStat.ChildrenOf(_process.Id))
                {
                    try
                    {
                        using var sidecar = Process.GetProcessById(child);
                        sidecar.Kill();
                    }
                    catch (ArgumentException)
                    {
                        // Already gone.
                    }
                }

                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync();
            }
        }

        _process.Dispose();
    }
}

/// <summary>What /proc says about a process.</summary>
internal static class ProcStat
{
    /// <summary>Clock ticks per second of /proc's CPU times (USER_HZ): 100 on every Linux architecture .NET runs on.</summary>
    public const double TicksPerSecond = 100;

    public static long CpuTicks(int pid)
    {
        var fields = Fields(File.ReadAllText($"/proc/{pid}/stat"));
        // Fields 14 and 15 of proc_pid_stat(5): utime and stime; Fields() starts at field 3 (state).
        return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
    }

    public static IEnumerable<int> ChildrenOf(int parent)
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(directory, "stat"));
            }
            catch (IOException)
            {
                continue;
            }

            // Field 4: the parent's pid.
            if (int.Parse(Fields(stat)[1], CultureInfo.InvariantCulture) == parent)
            {
                yield return pid;
            }
        }
    }

    /// <summary>The fields after the command name (which may hold spaces and parentheses).</summary>
    private static string[] Fields(string stat) =>
        stat[(stat.LastIndexOf(')') + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
}
