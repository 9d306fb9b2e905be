using System.Text.Json.Nodes;
using Checkpoint.Sidecar.Storage;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// Flush records are read back by the next sidecar of the job, from a storage anyone may write to:
/// a record that cannot be trusted is skipped and the one before it read, without blocking and
/// without reading more than a record may hold.
/// </summary>
public sealed class FlushRecordStoreTests : IDisposable
{
    private static readonly DateTimeOffset Ended = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
    private static readonly TimeSpan NeverBlocks = TimeSpan.FromSeconds(30);

    private readonly TempDirectory _temp = new();
    private readonly CheckpointLayout _layout;
    private readonly FlushRecordStore _records;

    public FlushRecordStoreTests()
    {
        _layout = new CheckpointLayout(_temp.CreateDirectory("storage"), "ns", "job");
        _records = new FlushRecordStore(_layout, NullLogger<FlushRecordStore>.Instance);
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void ReadLatest_SeveralRecords_ReturnsTheNewest()
    {
        _records.Write(Committed("older", Ended));
        _records.Write(Committed("newer", Ended.AddMinutes(1)));

        Assert.Equal("newer", _records.ReadLatest()?.CheckpointId);
    }

    [Fact]
    public async Task ReadLatest_NewestIsFifo_ReturnsThePreviousWithoutBlocking()
    {
        _records.Write(Committed("genuine", Ended));
        Posix.MakeFifo(Path.Combine(_layout.FlushRecordsDirectory, "29991231T235959999Z-fifo.json"));

        var latest = await Task.Run(_records.ReadLatest).WaitAsync(NeverBlocks);

        Assert.Equal("genuine", latest?.CheckpointId);
    }

    [Theory]
    [InlineData("copySeconds", 1e13)]
    [InlineData("totalSeconds", -1)]
    [InlineData("notifySeconds", 1e300)]
    [InlineData("bytes", -5)]
    public void ReadLatest_NewestHasImplausibleTimings_ReturnsThePrevious(string field, double value)
    {
        _records.Write(Committed("genuine", Ended));
        var absurd = WriteAndEdit(Committed("absurd", Ended.AddMinutes(1)), json => json["timings"]![field] = value);
        Assert.Contains(value.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText(absurd), StringComparison.OrdinalIgnoreCase);

        Assert.Equal("genuine", _records.ReadLatest()?.CheckpointId);
    }

    [Theory]
    [InlineData("gracePeriodSeconds", 1e13)]
    [InlineData("reason", null)]
    [InlineData("checkpointId", null)]
    [InlineData("outcome", null)]
    public void ReadLatest_NewestHasImplausibleOrMissingField_ReturnsThePrevious(string field, object? value)
    {
        _records.Write(Committed("genuine", Ended));
        WriteAndEdit(Committed("absurd", Ended.AddMinutes(1)), json => json[field] = value is null ? null : JsonValue.Create(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)));

        Assert.Equal("genuine", _records.ReadLatest()?.CheckpointId);
    }

    [Fact]
    public void ReadLatest_NewestOfFourHundredMiB_ReadsNoMoreThanARecordMayHold()
    {
        _records.Write(Committed("genuine", Ended));
        // A hole of zeros: costs no disk, but reading it whole costs 400 MiB of memory.
        using (var stream = File.Create(Path.Combine(_layout.FlushRecordsDirectory, "29991231T235959999Z-huge.json")))
        {
            stream.SetLength(400L << 20);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        var latest = _records.ReadLatest();
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal("genuine", latest?.CheckpointId);
        Assert.InRange(allocated, 0, 4 << 20);
    }

    internal static FlushRecord Committed(string checkpointId, DateTimeOffset ended) => new()
    {
        CheckpointId = checkpointId,
        Pod = "train-0",
        Reason = "preemption",
        Cause = "Signal",
        Outcome = "committed",
        Step = 7,
        TriggeredAt = ended.AddSeconds(-3),
        EndedAt = ended,
        GracePeriodSeconds = 30,
        DeadlineMissed = false,
        Timings = new FlushRecordTimings(0.001, 0.5, 1.5, 0.5, 0.01, 3, 0.1, 1 << 20),
    };

    /// <returns>The record's file.</returns>
    private string WriteAndEdit(FlushRecord record, Action<JsonNode> edit)
    {
        _records.Write(record);
        var path = Directory.EnumerateFiles(_layout.FlushRecordsDirectory, $"*-{record.CheckpointId}.json").Single();
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }
}
