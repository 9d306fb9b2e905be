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
    public void Next_Reason_StampsUtcTimeReasonAndRandomPart()
    {
        var id = _ids.Next(CheckpointReason.Preemption);

        Assert.Matches("^20261129T024500123Z-preemption-[0-9a-f]{16}$", id);
        Assert.True(CheckpointLayout.IsCommittedName(id));
    }

    [Fact]
    public void Next_TwoSidecarsAtTheSameTime_GiveDifferentIds()
    {
        // Knowing the clock (as a trainer in the same pod does) must not be enough to know the next
        // id, or the trainer can take its staging directory's name first.
        var other = new CheckpointIdGenerator(_time, _layout);

        var ids = Enumerable.Range(0, 8).Select(_ => new CheckpointIdGenerator(_time, _layout).Next(CheckpointReason.Periodic)).ToList();

        Assert.NotEqual(_ids.Next(CheckpointReason.Periodic), other.Next(CheckpointReason.Periodic));
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
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
    public void Next_SameMillisecond_DiffersAndSortsInOrderIssued()
    {
        var issued = Enumerable.Range(0, 50).Select(_ => _ids.Next(CheckpointReason.Periodic)).ToList();

        Assert.Equal(issued.Count, issued.Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(issued, issued.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Next_SameMillisecondWithLargestRandomParts_StillSortsInOrderIssued()
    {
        var ids = new CheckpointIdGenerator(_time, _layout, () => ulong.MaxValue);

        var issued = Enumerable.Range(0, 3).Select(_ => ids.Next(CheckpointReason.Periodic)).ToList();

        Assert.Equal(issued, issued.Order(StringComparer.Ordinal));
        Assert.Equal(issued.Count, issued.Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public void Next_DirectoryOfThatNameExists_AvoidsIt()
    {
        var random = new Queue<ulong>([0x10, 0x20UL << 32]);
        var ids = new CheckpointIdGenerator(_time, _layout, random.Dequeue);
        Directory.CreateDirectory(_layout.CommittedDirectory("20261129T024500123Z-periodic-0000000000000008"));

        var id = ids.Next(CheckpointReason.Periodic);

        Assert.Equal("20261129T024500123Z-periodic-0000000000000029", id);
        Assert.False(Directory.Exists(_layout.CommittedDirectory(id)));
    }
}
