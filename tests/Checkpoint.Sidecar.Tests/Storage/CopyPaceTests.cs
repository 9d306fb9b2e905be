using Checkpoint.Sidecar.Storage;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Checkpoint.Sidecar.Tests.Storage;

public sealed class CopyPaceTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public void Reserve_WithinBurst_DoesNotWait_ThenWaitsForTheDebt()
    {
        var time = new FakeTimeProvider();
        // 1000 B/s: a burst of 250 B.
        var bucket = new TokenBucket(1000, time);

        Assert.Equal(TimeSpan.Zero, bucket.Reserve(250));
        Assert.Equal(TimeSpan.FromSeconds(0.5), bucket.Reserve(500));

        // The next chunk waits behind the debt of the one before it.
        Assert.Equal(TimeSpan.FromSeconds(0.6), bucket.Reserve(100));
    }

    [Fact]
    public void Reserve_AfterTimePasses_RefillsAtTheRateUpToTheBurst()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(1000, time);
        bucket.Reserve(750);

        time.Advance(TimeSpan.FromSeconds(0.5));
        Assert.Equal(TimeSpan.FromSeconds(0.1), bucket.Reserve(100));

        // A long pause saves no more than the burst.
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.Equal(TimeSpan.Zero, bucket.Reserve(250));
        Assert.Equal(TimeSpan.FromSeconds(0.5), bucket.Reserve(500));
    }

    [Fact]
    public async Task BeforeChunk_OverTheRate_ReturnsOnlyOnceTheClockHasPaidForIt()
    {
        var time = new FakeTimeProvider();
        var pace = Background(time, nice: 0, IoPriorityClass.None, rate: 1000);
        var started = time.GetUtcNow();

        // 250 B of burst, then 1000 B more: one second.
        var worker = RunOnDedicatedThread(() => pace.BeforeChunk(1250, CancellationToken.None));
        while (!worker.IsCompleted)
        {
            time.Advance(TimeSpan.FromMilliseconds(50));
            await Task.WhenAny(worker, Task.Delay(1));
        }

        await worker;

        Assert.True(time.GetUtcNow() - started >= TimeSpan.FromSeconds(1), $"returned after {(time.GetUtcNow() - started).TotalSeconds} s of the clock");
    }

    [Fact]
    public async Task BeforeChunk_WaitingForTheRate_RaiseLetsItGoAtOnce()
    {
        var time = new FakeTimeProvider();
        var pace = Background(time, nice: 0, IoPriorityClass.None, rate: 1000);
        var started = time.GetUtcNow();

        // A hundred seconds at this rate; the clock never moves.
        var worker = RunOnDedicatedThread(() => pace.BeforeChunk(100_000, CancellationToken.None));
        Assert.True(pace.RaiseToFullSpeed());

        // Times out (fails) when the worker still waits for the rate after the raise.
        await worker.WaitAsync(Patience);
        Assert.Equal(started, time.GetUtcNow());
        Assert.False(pace.IsBackground);
        Assert.True(pace.StartedInBackground);
        Assert.False(pace.RaiseToFullSpeed());
    }

    [Fact]
    public async Task BeforeChunk_WaitingForTheRate_CancellationThrows()
    {
        var time = new FakeTimeProvider();
        var pace = Background(time, nice: 0, IoPriorityClass.None, rate: 1000);
        using var cancellation = new CancellationTokenSource();

        var worker = RunOnDedicatedThread(() => pace.BeforeChunk(100_000, cancellation.Token));
        await cancellation.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => worker.WaitAsync(Patience));
    }

    [Theory]
    [InlineData(IoPriorityClass.Idle, 0)]
    [InlineData(IoPriorityClass.BestEffort, 7)]
    public async Task BeforeChunk_BackgroundOnADedicatedThread_SetsItsNiceAndIoPriority_RaiseRestoresWhatLinuxAllows(IoPriorityClass ioClass, int level)
    {
        var pace = Background(new FakeTimeProvider(), nice: 7, ioClass, rate: 0);
        (ThreadStat? Stat, (IoPriorityClass, int)? Io) background = default, raised = default;

        await RunOnDedicatedThread(() =>
        {
            var tid = ThreadScheduling.CurrentThreadId;
            pace.BeforeChunk(1 << 20, CancellationToken.None);
            background = (ThreadStat.Read(Environment.ProcessId, tid), ThreadScheduling.GetIoPriority(tid));
            pace.RaiseToFullSpeed();
            pace.BeforeChunk(1 << 20, CancellationToken.None);
            raised = (ThreadStat.Read(Environment.ProcessId, tid), ThreadScheduling.GetIoPriority(tid));
        }).WaitAsync(Patience);

        Assert.Equal(7, background.Stat!.Nice);
        Assert.Equal((ioClass, level), background.Io);
        // Lowering nice again needs CAP_SYS_NICE, which a pod lacks: there the thread keeps 7 for the rest of its copy.
        Assert.Equal(ThreadStat.HasCapSysNice() ? 0 : 7, raised.Stat!.Nice);
        Assert.Equal((IoPriorityClass.BestEffort, ThreadScheduling.NormalBestEffortLevel), raised.Io);
    }

    [Fact]
    public async Task BeforeChunk_FullSpeed_LeavesTheThreadAlone()
    {
        var pace = CopyPace.FullSpeed();
        ThreadStat? stat = null;
        (IoPriorityClass, int)? io = null;

        await RunOnDedicatedThread(() =>
        {
            var tid = ThreadScheduling.CurrentThreadId;
            pace.BeforeChunk(1 << 20, CancellationToken.None);
            (stat, io) = (ThreadStat.Read(Environment.ProcessId, tid), ThreadScheduling.GetIoPriority(tid));
        }).WaitAsync(Patience);

        Assert.Equal(0, stat!.Nice);
        Assert.Equal(IoPriorityClass.None, io!.Value.Item1);
    }

    [Fact]
    public async Task BeforeChunk_OnAThreadPoolThread_LeavesItsPriorityAlone()
    {
        var pace = Background(new FakeTimeProvider(), nice: 7, IoPriorityClass.Idle, rate: 0);

        (ThreadStat? stat, (IoPriorityClass, int)? io) = await Task.Run(() =>
        {
            var tid = ThreadScheduling.CurrentThreadId;
            pace.BeforeChunk(1 << 20, CancellationToken.None);
            return (ThreadStat.Read(Environment.ProcessId, tid), ThreadScheduling.GetIoPriority(tid));
        });

        // The pool thread would carry the priority into unrelated work after the copy.
        Assert.Equal(0, stat!.Nice);
        Assert.Equal(IoPriorityClass.None, io!.Value.Item1);
    }

    [Fact]
    public void Background_NothingToLowerOrLimit_IsFullSpeed()
    {
        var pace = Background(new FakeTimeProvider(), nice: 0, IoPriorityClass.None, rate: 0);

        Assert.False(pace.StartedInBackground);
        Assert.False(pace.RaiseToFullSpeed());
    }

    private static CopyPace Background(TimeProvider time, int nice, IoPriorityClass ioClass, long rate) =>
        CopyPace.Background(new BackgroundPace(nice, ioClass, rate), time, NullLogger.Instance, "test");

    /// <summary>As the copier runs its workers: a thread of its own that ends with the work.</summary>
    private static Task RunOnDedicatedThread(Action work)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                work();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        })
        { IsBackground = true };
        thread.Start();
        return done.Task;
    }
}
