using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// One small JSON file per flush in <c>&lt;job&gt;/flush-records/</c>: how each flush went, kept on
/// the shared storage so the timing of the flush that ended a pod can be read after the pod is gone,
/// and re-exported as metrics by the next sidecar of the job. One file per record (written aside,
/// fsynced, renamed) because appending to one shared file is not atomic on NFS. Reading them back is
/// reading untrusted storage content: a record that cannot be trusted is logged and skipped.
/// </summary>
public sealed class FlushRecordStore(CheckpointLayout layout, ILogger<FlushRecordStore> logger, int keep = 100)
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

    /// <summary>
    /// The newest record that can be trusted, or null: a record that is not a regular file, larger
    /// than a record may be, not one, or whose figures no flush could have, is skipped (logged), and
    /// the one before it still tells the story. Only the newest that <see cref="Write"/> keeps are tried.
    /// </summary>
    /// <exception cref="IOException">The records directory cannot be listed.</exception>
    public FlushRecord? ReadLatest() => ReadTrusted().FirstOrDefault();

    /// <summary>Every record that can be trusted, newest first (read lazily); the others are skipped and logged.</summary>
    /// <exception cref="IOException">The records directory cannot be listed.</exception>
    public IEnumerable<FlushRecord> ReadTrusted()
    {
        using var directory = StorageFile.OpenDirectoryIfExists(layout.FlushRecordsDirectory);
        if (directory is null)
        {
            yield break;
        }

        foreach (var path in RecordFiles().Reverse().Take(keep))
        {
            FlushRecord? record = null;
            string? problem;
            try
            {
                var json = StorageFile.ReadAll(directory, Path.GetFileName(path), StorageFile.FlushRecordLimit);
                record = JsonSerializer.Deserialize(json.Span, FlushRecordJsonContext.Default.FlushRecord);
                problem = record is null ? "it holds null" : record.FindImplausible();
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                problem = StorageErrors.Describe(e);
            }

            if (problem is null)
            {
                yield return record!;
            }
            else
            {
                StorageLog.FlushRecordSkipped(logger, path, problem);
            }
        }
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

    /// <summary>Ranks of the world that had no sealed shard when a job-wide checkpoint failed; null otherwise.</summary>
    public IReadOnlyList<int>? MissingRanks { get; init; }

    /// <summary>Phase durations; null when the flush failed before committing.</summary>
    public FlushRecordTimings? Timings { get; init; }

    /// <summary>
    /// True for a preemption drill (<c>checkpoint-sidecar drill</c>): reason preemption, but the pod was
    /// not preempted; readers counting preemptions skip it. Absent otherwise (and in older records).
    /// </summary>
    public bool? Drill { get; init; }

    /// <summary>
    /// Longer than any grace period or flush: seconds beyond it come from a damaged or forged record,
    /// and would overflow the TimeSpan they are read into (1e13 s does).
    /// </summary>
    internal static readonly double MaxPlausibleSeconds = TimeSpan.FromDays(366).TotalSeconds;

    /// <returns>What no real flush could have written, or null when the record is plausible.</returns>
    internal string? FindImplausible()
    {
        if (CheckpointId is null || Pod is null || Reason is null || Outcome is null)
        {
            return "it lacks its checkpoint id, pod, reason or outcome";
        }

        if (!IsPlausibleSeconds(GracePeriodSeconds))
        {
            return $"its grace period of {GracePeriodSeconds} s is not one";
        }

        if (Timings is not { } t)
        {
            return null;
        }

        double[] phases = [t.NotifySeconds, t.DumpSeconds, t.CopySeconds, t.VerifySeconds, t.CommitSeconds, t.TotalSeconds, t.CommitWaitSeconds];
        if (!phases.All(IsPlausibleSeconds))
        {
            return $"its timings ({string.Join(", ", phases)} s) are not those of a flush";
        }

        return t.Bytes < 0 ? $"its size of {t.Bytes} bytes is not one" : null;
    }

    private static bool IsPlausibleSeconds(double seconds) => double.IsFinite(seconds) && seconds >= 0 && seconds <= MaxPlausibleSeconds;
}

/// <param name="CommitWaitSeconds">Part of the commit: from this pod's seal to the job-wide commit (absent in records of earlier sidecars).</param>
/// <param name="ReadBackBytes">Of <paramref name="Bytes"/>, those read back before the commit (absent in records of earlier sidecars: all of them).</param>
public sealed record FlushRecordTimings(
    double NotifySeconds, double DumpSeconds, double CopySeconds, double VerifySeconds, double CommitSeconds,
    double TotalSeconds, double BudgetUsedRatio, long Bytes, double CommitWaitSeconds = 0, long? ReadBackBytes = null);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(FlushRecord))]
internal sealed partial class FlushRecordJsonContext : JsonSerializerContext;
