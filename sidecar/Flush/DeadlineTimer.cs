namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// A one-shot timer for a checkpoint's deadline that never fires before the deadline, as the clock the
/// deadline was set by reads it.
/// </summary>
/// <remarks>
/// Runtime timers count whole milliseconds on a monotonic clock, so they may fire before a wall-clock
/// deadline (measured on the build machine: 111 of 200 timers early, by up to 0.8 ms). A deadline
/// declared passed before it has passed fails a flush that still had time, and tells a drill's report
/// it had time to spare when it failed. So when it fires early, it waits out the rest.
/// </remarks>
internal sealed class DeadlineTimer : IDisposable
{
    /// <summary>Added to what is left when the timer fired early, so the next due time is not rounded down to now.</summary>
    private static readonly TimeSpan Rounding = TimeSpan.FromMilliseconds(1);

    private readonly TimeProvider _time;
    private readonly DateTimeOffset _deadline;
    private readonly Action _passed;
    private readonly ITimer _timer;

    /// <param name="passed">Called once, on a timer thread, when the deadline has passed.</param>
    public DeadlineTimer(TimeProvider time, DateTimeOffset deadline, Action passed)
    {
        _time = time;
        _deadline = deadline;
        _passed = passed;
        // Created unarmed, then armed: the callback may run at once and must find the timer assigned.
        _timer = time.CreateTimer(static state => ((DeadlineTimer)state!).Fire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        Arm(deadline - time.GetUtcNow());
    }

    public void Dispose() => _timer.Dispose();

    private void Fire()
    {
        var left = _deadline - _time.GetUtcNow();
        if (left > TimeSpan.Zero)
        {
            Arm(left + Rounding);
            return;
        }

        _passed();
    }

    private void Arm(TimeSpan dueIn)
    {
        try
        {
            _timer.Change(dueIn > TimeSpan.Zero ? dueIn : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // Disposed meanwhile: the checkpoint ended or its deadline moved; nothing is due.
        }
    }
}
