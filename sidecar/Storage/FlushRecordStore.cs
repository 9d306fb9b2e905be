using System.Text.Json;
using System.Text.Json.Serialization;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// One small JSON file per flush in <c>&lt;job&gt;/flush-records/</c>: how each flush went, kept on
/// the shared storage so the timing of the flush that ended a pod can be read after the pod is gone,
/// and re-exported as metrics by the next sidecar of the job. One file per record (written aside,
/// fsynced, renamed) because appending to one shared file is not atomic on NFS.
/// </summary>
public sealed class FlushRecordStore(CheckpointLayout layout, int keep = 100)
{
    public void Write(FlushRecord record)
    {
        var directory = layout.FlushRecordsDirectory;
        Directory.CreateDirectory(directory);
        var name = $"{record.EndedAt.UtcDateTime:yyyyMMdd'T'HHmmssfff'Z'}-{record.CheckpointId}.json";
        var temp = Path.Combine(directory, "." + name + ".tmp");
        using (var handle = File.OpenHandle(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            RandomAccess.Write(handle, JsonSerializer.SerializeToUtf8Bytes(record, FlushRecordJsonContext.Default.FlushRecord), 0);
            NativeFile.Fsync(handle, temp);
        }

        File.Move(temp, Path.Combine(directory, name), overwrite: true);
        NativeFile.FsyncDirectory(directory);
        foreach (var old in RecordFiles().SkipLast(keep).ToList())
        {
            File.Delete(old);
        }
    }

    /// <summary>The newest readable record, or null.</summary>
    public FlushRecord? ReadLatest()
    {
        foreach (var path in RecordFiles().Reverse())
        {
            try
            {
                return JsonSerializer.Deserialize(File.ReadAllBytes(path), FlushRecordJsonContext.Default.FlushRecord);
            }
            catch (Exception e) when (e is IOException or JsonException)
            {
                // A damaged record is skipped; the one before it still tells the story.
            }
        }

        return null;
    }

    private IEnumerable<string> RecordFiles() =>
        Directory.Exists(layout.FlushRecordsDirectory)
            ? Directory.EnumerateFiles(layout.FlushRecordsDirectory, "*.json").Where(p => !Path.GetFileName(p).StartsWith('.')).Order(StringComparer.Ordinal)
            : [];
}

/// <summary>The published format of a flush record (README).</summary>
public sealed record FlushRecord
{
    public int FormatVersion { get; init; } = 1;

    public required string CheckpointId { get; init; }

    public required string Pod { get; init; }

    /// <summary>preemption, periodic or manual.</summary>
    public required string Reason { get; init; }

    /// <summary>For preemptions: the DisruptionTarget reason, or the trigger.</summary>
    public string? Cause { get; init; }

    /// <summary>committed or failed.</summary>
    public required string Outcome { get; init; }

    public string? FailureCause { get; init; }

    public string? Error { get; init; }

    public long? Step { get; init; }

    public required DateTimeOffset TriggeredAt { get; init; }

    public required DateTimeOffset EndedAt { get; init; }

    public required double GracePeriodSeconds { get; init; }

    public required bool DeadlineMissed { get; init; }

    /// <summary>Phase durations; null when the flush failed before committing.</summary>
    public FlushRecordTimings? Timings { get; init; }
}

public sealed record FlushRecordTimings(
    double NotifySeconds, double DumpSeconds, double CopySeconds, double VerifySeconds, double CommitSeconds,
    double TotalSeconds, double BudgetUsedRatio, long Bytes);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(FlushRecord))]
internal sealed partial class FlushRecordJsonContext : JsonSerializerContext;
