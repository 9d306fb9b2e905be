using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// How a background copy yields to training: the nice its worker threads take (0: unchanged), their
/// I/O class (best-effort at the lowest level, idle, or unchanged) and a rate limit (0: none).
/// </summary>
public sealed record BackgroundPace(int Nice, IoPriorityClass IoClass, long RateBytesPerSecond)
{
    /// <summary>Nothing to lower and nothing to limit: a copy at this pace is a full-speed copy.</summary>
    public bool IsFullSpeed => Nice == 0 && IoClass == IoPriorityClass.None && RateBytesPerSecond == 0;
}

/// <summary>
/// The pace of one copy. Mutable while the copy runs: a preemption that lets a periodic upload
/// finish raises it to full speed.
/// </summary>
/// <remarks>
/// Raising is asymmetric on Linux: any thread may raise its own nice, but lowering it again needs
/// CAP_SYS_NICE (or an RLIMIT_NICE of 20, whose hard limit is 0 in a pod and cannot be raised without
/// CAP_SYS_RESOURCE). I/O priority has no such asymmetry: idle and best-effort are free both ways. So a
/// raise lifts the rate limit at once (waiting workers wake), puts every worker back to the normal
/// best-effort I/O level at its next chunk, and tries nice 0; where that is refused the rest of this
/// copy keeps its nice (logged once). Its threads end with the copy, so the next copy (the preemption
/// flush's) starts at nice 0, and a preempted pod's trainer has stopped competing for the CPU anyway.
/// </remarks>
public sealed class CopyPace
{
    // What this thread was set to; a copy worker is a dedicated thread, so it holds for the whole copy.
    [ThreadStatic]
    private static int t_nice;

    [ThreadStatic]
    private static int t_io;

    [ThreadStatic]
    private static bool t_ioSet;

    [ThreadStatic]
    private static bool t_niceStuck;

    private readonly BackgroundPace? _background;
    private readonly TokenBucket? _rate;
    private readonly ILogger _logger;
    private readonly string _copy;
    private readonly TaskCompletionSource _raised = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _priorityFailureLogged;
    private int _threadPoolLogged;

    private CopyPace(BackgroundPace? background, TimeProvider? time, ILogger logger, string copy)
    {
        _background = background;
        _rate = background is { RateBytesPerSecond: > 0 } && time is not null ? new TokenBucket(background.RateBytesPerSecond, time) : null;
        _logger = logger;
        _copy = copy;
    }

    public static CopyPace FullSpeed() => new(null, null, NullLogger.Instance, "");

    /// <param name="copy">Names the copy in the log (the checkpoint id).</param>
    public static CopyPace Background(BackgroundPace pace, TimeProvider time, ILogger logger, string copy) =>
        pace.IsFullSpeed ? FullSpeed() : new(pace, time, logger, copy);

    /// <summary>This copy started in the background: its duration says little about the storage's full speed.</summary>
    public bool StartedInBackground => _background is not null;

    /// <summary>Running in the background now: started so and not raised.</summary>
    public bool IsBackground => _background is not null && !_raised.Task.IsCompleted;

    /// <summary>
    /// From now on the copy goes at full speed: the rate limit is lifted (workers waiting for it go on at
    /// once) and each worker restores its priority before its next chunk, as far as Linux lets it.
    /// </summary>
    /// <returns>True when this call raised a background pace; false when it was full speed already.</returns>
    public bool RaiseToFullSpeed()
    {
        if (!IsBackground)
        {
            return false;
        }

        if (!_raised.TrySetResult())
        {
            return false;
        }

        var nice = _background!.Nice;
        CopyPaceLog.Raised(_logger, _copy, nice);
        return true;
    }

    /// <summary>
    /// Called by a copy worker before each chunk it reads, writes or reads back, on the worker's own
    /// thread (a dedicated thread that ends with the copy, so whatever priority it is given dies with
    /// it): may lower or restore that thread's CPU and I/O priority, and wait to keep a rate.
    /// </summary>
    public void BeforeChunk(int bytes, CancellationToken cancellationToken)
    {
        if (_background is null)
        {
            return;
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (Thread.CurrentThread.IsThreadPoolThread)
        {
            // A pool thread would carry the lowered priority into whatever work it runs next.
            if (Interlocked.Exchange(ref _threadPoolLogged, 1) == 0)
            {
                CopyPaceLog.ThreadPoolWorker(_logger, _copy);
            }
        }
        else
        {
            ApplyToThisThread();
        }

        if (_rate is not null && IsBackground)
        {
            // Raised to full speed while waiting: go on at once.
            _rate.Take(bytes, _raised.Task, cancellationToken);
        }
    }

    private void ApplyToThisThread()
    {
        var background = IsBackground;
        var nice = background ? _background!.Nice : 0;
        var tid = ThreadScheduling.CurrentThreadId;

        // Lowering nice is tried once per thread: refused once, it is refused for good.
        if (t_nice != nice && !(nice < t_nice && t_niceStuck))
        {
            var errno = ThreadScheduling.TrySetNice(tid, nice);
            if (errno == 0)
            {
                t_nice = nice;
            }
            else
            {
                t_niceStuck = nice < t_nice;
                ReportFailure($"nice {t_nice} -> {nice}", errno);
            }
        }

        // Raised, a worker goes back to the best-effort level of a nice-0 thread; one never lowered keeps what it inherited.
        var (ioClass, level) = background
            ? (_background!.IoClass, _background.IoClass == IoPriorityClass.BestEffort ? ThreadScheduling.LowestBestEffortLevel : 0)
            : t_ioSet ? (IoPriorityClass.BestEffort, ThreadScheduling.NormalBestEffortLevel) : (IoPriorityClass.None, 0);
        var io = ((int)ioClass << 8) | level;
        if (t_io != io && (ioClass != IoPriorityClass.None || t_ioSet))
        {
            var errno = ThreadScheduling.TrySetIoPriority(tid, ioClass, level);
            // Not retried on every chunk when refused: the copy goes on at whatever priority it has.
            t_io = io;
            t_ioSet = true;
            if (errno != 0)
            {
                ReportFailure($"I/O class {ioClass}", errno);
            }
        }
    }

    private void ReportFailure(string change, int errno)
    {
        if (Interlocked.Exchange(ref _priorityFailureLogged, 1) == 0)
        {
            var error = NativeFile.Describe(errno);
            CopyPaceLog.PriorityNotSet(_logger, _copy, change, error);
        }
    }
}

/// <summary>
/// A token bucket shared by the workers of one copy: each chunk takes its bytes, and a worker that
/// finds the bucket in debt waits until the rate has paid for its chunk. Bursts up to a quarter of a
/// second of bytes, so a copy that starts or resumes does not wait for its first chunk.
/// </summary>
internal sealed class TokenBucket(long bytesPerSecond, TimeProvider time)
{
    private readonly object _gate = new();
    private readonly double _capacity = bytesPerSecond / 4.0;
    private double _tokens = bytesPerSecond / 4.0;
    private long _refilledAt = time.GetTimestamp();

    /// <summary>Takes <paramref name="bytes"/> now; returns how long the caller must wait before using them.</summary>
    public TimeSpan Reserve(int bytes)
    {
        lock (_gate)
        {
            var now = time.GetTimestamp();
            _tokens = Math.Min(_capacity, _tokens + time.GetElapsedTime(_refilledAt, now).TotalSeconds * bytesPerSecond);
            _refilledAt = now;
            _tokens -= bytes;
            return _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / bytesPerSecond);
        }
    }

    /// <summary>Blocks the calling (dedicated copy) thread until the rate allows <paramref name="bytes"/> more.</summary>
    /// <param name="stopWaiting">Completes when the rate no longer applies.</param>
    public void Take(int bytes, Task stopWaiting, CancellationToken cancellationToken)
    {
        var wait = Reserve(bytes);
        if (wait > TimeSpan.Zero)
        {
            Task.WhenAny(Task.Delay(wait, time, cancellationToken), stopWaiting).GetAwaiter().GetResult();
            cancellationToken.ThrowIfCancellationRequested();
        }
    }
}

internal static partial class CopyPaceLog
{
    [LoggerMessage(EventId = 150, Level = LogLevel.Information, Message = "Copy of {CheckpointId} raised to full speed: rate limit lifted, I/O priority back to normal; its threads leave nice {Nice} for 0 where Linux allows it (CAP_SYS_NICE)")]
    public static partial void Raised(ILogger logger, string checkpointId, int nice);

    [LoggerMessage(EventId = 151, Level = LogLevel.Information, Message = "Copy of {CheckpointId}: could not set {Change} on a copy thread ({Error}); the copy goes on at the priority it has (logged once per copy)")]
    public static partial void PriorityNotSet(ILogger logger, string checkpointId, string change, string error);

    [LoggerMessage(EventId = 152, Level = LogLevel.Warning, Message = "Copy of {CheckpointId} runs on thread-pool threads: their priority is left alone (it would outlive the copy); only the rate limit applies")]
    public static partial void ThreadPoolWorker(ILogger logger, string checkpointId);
}
