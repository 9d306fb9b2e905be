using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Time.Testing;

namespace Checkpoint.Sidecar.Tests.Flush;

public sealed class CheckpointIdGeneratorTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 29, 2, 45, 0, 123, TimeSpan.Zero));
    private readonly CheckpointLayout _layout;
    private readonly CheckpointIdGenerator _ids;

    public CheckpointIdGeneratorTests()
    {
        _layout = new CheckpointLayout(_temp.Path, "ns", "job");
        _ids = new CheckpointIdGenerator(_time, _layout);
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Next_Reason_StampsUtcTimeAndReason()
    {
        Assert.Equal("20261129T024500123Z-preemption", _ids.Next(CheckpointReason.Preemption));
    }

    [Fact]
    public void Next_LaterTimes_SortByTime()
    {
        var ids = new List<string> { _ids.Next(CheckpointReason.Preemption) };
        foreach (var step in new[] { TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(1), TimeSpan.FromHours(1), TimeSpan.FromDays(40) })
        {
            _time.Advance(step);
            ids.Add(_ids.Next(step.TotalSeconds > 1 ? CheckpointReason.Manual : CheckpointReason.Periodic));
        }

        Assert.Equal(ids, ids.Order(StringComparer.Ordinal));
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public void Next_SameMillisecond_Differs()
    {
        var first = _ids.Next(CheckpointReason.Periodic);
        var second = _ids.Next(CheckpointReason.Periodic);
        var third = _ids.Next(CheckpointReason.Periodic);

        Assert.Equal(3, new HashSet<string>([first, second, third], StringComparer.Ordinal).Count);
        Assert.Equal([first, second, third], new[] { first, second, third }.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Next_DirectoryOfThatNameExists_AvoidsIt()
    {
        Directory.CreateDirectory(_layout.CommittedDirectory("20261129T024500123Z-periodic"));

        var id = _ids.Next(CheckpointReason.Periodic);

        Assert.NotEqual("20261129T024500123Z-periodic", id);
        Assert.False(Directory.Exists(_layout.CommittedDirectory(id)));
    }
}
