using Checkpoint.Sidecar.Flush;
using Microsoft.Extensions.Time.Testing;

namespace Checkpoint.Sidecar.Tests.Flush;

/// <summary>
/// The deadline timer fires once the deadline has passed by the clock, even when the timer under it
/// fires early (as runtime timers do, by a tick of a coarse clock).
/// </summary>
public sealed class DeadlineTimerTests
{
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(1);

    [Fact]
    public void TimerFiresBeforeTheClockReachesTheDeadline_WaitsOutTheRest()
    {
        var early = TimeSpan.FromMilliseconds(4);
        var time = new EarlyTimers(early);
        var fired = new List<DateTimeOffset>();
        var deadline = time.GetUtcNow() + Budget;
        using var timer = new DeadlineTimer(time, deadline, () => fired.Add(time.GetUtcNow()));

        // The timer under it fires at 996 ms; the rest is waited out.
        time.Timers.Advance(Budget - TimeSpan.FromMilliseconds(2));
        Assert.Empty(fired);

        time.Timers.Advance(TimeSpan.FromMilliseconds(10));
        Assert.True(Assert.Single(fired) >= deadline, "fired before the deadline");
        time.Timers.Advance(TimeSpan.FromSeconds(10));
        Assert.Single(fired);
    }

    [Fact]
    public void DeadlineAlreadyPassed_FiresAtOnce()
    {
        var time = new FakeTimeProvider();
        var fired = 0;
        using var timer = new DeadlineTimer(time, time.GetUtcNow() - TimeSpan.FromSeconds(1), () => fired++);

        time.Advance(TimeSpan.Zero);
        Assert.Equal(1, fired);
    }

    [Fact]
    public void Disposed_NeverFires()
    {
        var time = new FakeTimeProvider();
        var fired = 0;
        var timer = new DeadlineTimer(time, time.GetUtcNow() + Budget, () => fired++);

        timer.Dispose();
        time.Advance(Budget * 2);
        Assert.Equal(0, fired);
    }

    /// <summary>A clock whose timers fire <c>early</c> before they are due, as runtime timers may.</summary>
    private sealed class EarlyTimers(TimeSpan early) : TimeProvider
    {
        public FakeTimeProvider Timers { get; } = new();

        public override DateTimeOffset GetUtcNow() => Timers.GetUtcNow();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            new EarlyTimer(Timers.CreateTimer(callback, state, Early(dueTime), period), this);

        private TimeSpan Early(TimeSpan due) => due != Timeout.InfiniteTimeSpan && due > early ? due - early : due;

        private sealed class EarlyTimer(ITimer timer, EarlyTimers clock) : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => timer.Change(clock.Early(dueTime), period);

            public void Dispose() => timer.Dispose();

            public ValueTask DisposeAsync() => timer.DisposeAsync();
        }
    }
}
