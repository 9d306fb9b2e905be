using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Checkpoint.TestSupport;

/// <summary>
/// A child process whose output lines the test can wait for: every wait is on an event (a line
/// appearing, the process exiting), bounded by a timeout that fails the test with the output so far.
/// </summary>
public sealed class ObservedProcess : IAsyncDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<(Regex Pattern, TaskCompletionSource<Match> Found)> _waiters = [];
    private readonly TaskCompletionSource _outputClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _errorClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ObservedProcess(string name, Process process)
    {
        Name = name;
        _process = process;
    }

    public string Name { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get
        {
            lock (_lines)
            {
                return string.Join('\n', _lines);
            }
        }
    }

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return _lines.ToList();
            }
        }
    }

    public static ObservedProcess Start(string name, string fileName, IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var observed = new ObservedProcess(name, process);
        process.OutputDataReceived += (_, e) => observed.OnLine(e.Data, observed._outputClosed);
        process.ErrorDataReceived += (_, e) => observed.OnLine(e.Data, observed._errorClosed);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return observed;
    }

    /// <summary>Waits for a line matching <paramref name="pattern"/>, including lines already seen.</summary>
    public async Task<Match> WaitForLineAsync(string pattern, TimeSpan? timeout = null)
    {
        var regex = new Regex(pattern, RegexOptions.CultureInvariant);
        TaskCompletionSource<Match> found;
        lock (_lines)
        {
            foreach (var line in _lines)
            {
                if (regex.Match(line) is { Success: true } match)
                {
                    return match;
                }
            }

            found = new TaskCompletionSource<Match>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((regex, found));
        }

        var exited = _process.WaitForExitAsync();
        var limit = timeout ?? DefaultTimeout;
        var winner = await Task.WhenAny(found.Task, exited, Task.Delay(limit)).ConfigureAwait(false);
        if (winner == found.Task)
        {
            return await found.Task.ConfigureAwait(false);
        }

        if (winner == exited)
        {
            // The line may have been printed just before the exit.
            await Task.WhenAll(_outputClosed.Task, _errorClosed.Task).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            if (found.Task.IsCompletedSuccessfully)
            {
                return found.Task.Result;
            }

            throw new InvalidOperationException(
                $"{Name} exited (code {_process.ExitCode}) without printing a line matching /{pattern}/. Output:\n{Output}");
        }

        throw new TimeoutException($"{Name} printed no line matching /{pattern}/ within {limit}. Output:\n{Output}");
    }

    public void Signal(int signal) => Posix.Signal(_process.Id, signal);

    public async Task<int> WaitForExitAsync(TimeSpan? timeout = null)
    {
        var limit = timeout ?? DefaultTimeout;
        try
        {
            await _process.WaitForExitAsync().WaitAsync(limit).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{Name} did not exit within {limit}. Output:\n{Output}");
        }

        await Task.WhenAll(_outputClosed.Task, _errorClosed.Task).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().ConfigureAwait(false);
        }

        _process.Dispose();
    }

    private void OnLine(string? line, TaskCompletionSource closed)
    {
        if (line is null)
        {
            closed.TrySetResult();
            return;
        }

        lock (_lines)
        {
            _lines.Add(line);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Pattern.Match(line) is { Success: true } match)
                {
                    _waiters[i].Found.TrySetResult(match);
                    _waiters.RemoveAt(i);
                }
            }
        }
    }
}
