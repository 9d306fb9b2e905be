using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// The read-back budget of a flush with a deadline (a preemption, a drill): each file is read back
/// only while the rest of the copy, the read-backs already owed, this one and a commit allowance are
/// predicted to end before the deadline; otherwise it is committed on the hash taken while writing
/// and the fsync, and resume hashes it. Missing the deadline loses the whole checkpoint; skipping a
/// read-back loses only a check that resume makes up for, so every guess here leans to skipping.
/// </summary>
/// <remarks>
/// Throughputs: the lower of the planner's (measured flushes, this pod's or the previous pod's
/// record) and this flush's own copy so far; read-back at the planner's read-back throughput, else
/// at the copy's. With neither (nothing measured, nothing copied yet) the file is read back.
/// Read-backs owed are modelled as a queue that drains at the read-back throughput since each was
/// granted: the copier reads a file back as soon as it is granted, while other files still copy.
/// </remarks>
public sealed class DeadlineReadBackBudget : IReadBackBudget
{
    /// <summary>Sealing the shard and writing the job manifest: a few small files, fsynced.</summary>
    public static readonly TimeSpan DefaultCommitAllowance = TimeSpan.FromMilliseconds(500);

    private readonly FlushPlanner _planner;
    private readonly DateTimeOffset _deadline;
    private readonly long _totalBytes;
    private readonly TimeProvider _time;
    private readonly TimeSpan _commitAllowance;
    private readonly DateTimeOffset _started;
    private readonly object _gate = new();
    private double _owedBytes;
    private DateTimeOffset _owedAt;

    /// <param name="totalBytes">The bytes this flush copies: what is copied so far is this less what is still to copy.</param>
    /// <param name="commitAllowance">Time kept for sealing and the commit; <see cref="DefaultCommitAllowance"/> when null.</param>
    public DeadlineReadBackBudget(
        FlushPlanner planner, DateTimeOffset deadline, long totalBytes, TimeProvider time, TimeSpan? commitAllowance = null)
    {
        _planner = planner;
        _deadline = deadline;
        _totalBytes = totalBytes;
        _time = time;
        _commitAllowance = commitAllowance ?? DefaultCommitAllowance;
        _started = time.GetUtcNow();
        _owedAt = _started;
    }

    /// <summary>Files committed on their write-side hash so far.</summary>
    public int WriteHashFiles { get; private set; }

    /// <summary>Bytes of those files.</summary>
    public long WriteHashBytes { get; private set; }

    /// <summary>Files granted a read-back so far.</summary>
    public int ReadBackFiles { get; private set; }

    /// <summary>
    /// The budget of one flush: none under CHECKPOINT_VERIFY=write-hash, every file under
    /// read-back-always and for flushes without a deadline (periodic, manual), this one otherwise.
    /// </summary>
    public static IReadBackBudget For(
        SidecarOptions options, DateTimeOffset? deadline, FlushPlanner planner, long totalBytes, TimeProvider time) =>
        options.Verify switch
        {
            SidecarOptions.VerifyWriteHash => ReadBackBudget.None,
            SidecarOptions.VerifyReadBackAlways => ReadBackBudget.All,
            _ when deadline is null => ReadBackBudget.All,
            _ => new DeadlineReadBackBudget(planner, deadline.Value, totalBytes, time),
        };

    public bool ShouldReadBack(ManifestFile copied, long bytesStillToCopy)
    {
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            if (!Fits(copied.Size, Math.Max(0, bytesStillToCopy), now))
            {
                WriteHashFiles++;
                WriteHashBytes += copied.Size;
                return false;
            }

            ReadBackFiles++;
            _owedBytes += copied.Size;
            return true;
        }
    }

    private bool Fits(long size, long bytesStillToCopy, DateTimeOffset now)
    {
        var (plannedCopy, plannedReadBack) = _planner.Throughputs;
        var elapsed = (now - _started).TotalSeconds;
        var copiedSoFar = _totalBytes - bytesStillToCopy;
        double? observedCopy = elapsed > 0 && copiedSoFar > 0 ? copiedSoFar / elapsed : null;
        var copyRate = Lower(plannedCopy, observedCopy);
        var readRate = plannedReadBack ?? copyRate;
        if (copyRate is not { } copy || readRate is not { } read)
        {
            // Nothing to predict from: the safe default of the mode.
            return true;
        }

        // Read-backs granted earlier have been running since; what is left of them drains at the read rate.
        var drained = read * Math.Max(0, (now - _owedAt).TotalSeconds);
        _owedBytes = Math.Max(0, _owedBytes - drained);
        _owedAt = now;
        var seconds = bytesStillToCopy / copy + (_owedBytes + size) / read + _commitAllowance.TotalSeconds;
        return double.IsFinite(seconds) && seconds <= (_deadline - now).TotalSeconds;
    }

    private static double? Lower(double? a, double? b) => a is null ? b : b is null ? a : Math.Min(a.Value, b.Value);

    /// <summary>Once per flush, when some files were not read back.</summary>
    internal void LogIfDegraded(ILogger logger, string checkpointId)
    {
        int files;
        long bytes;
        int readBack;
        lock (_gate)
        {
            files = WriteHashFiles;
            bytes = WriteHashBytes;
            readBack = ReadBackFiles;
        }

        if (files > 0)
        {
            var secondsLeft = (_deadline - _time.GetUtcNow()).TotalSeconds;
            ReadBackBudgetLog.Degraded(logger, checkpointId, files, bytes, readBack, secondsLeft);
        }
    }
}

internal static partial class ReadBackBudgetLog
{
    [LoggerMessage(EventId = 290, Level = LogLevel.Warning, Message = "Checkpoint {CheckpointId}: {Files} file(s), {Bytes} bytes, committed on their write-side hash and fsync without a read-back, which would not have fitted before the deadline ({ReadBack} file(s) read back; {SecondsLeft:F1} s left); resume hashes them")]
    public static partial void Degraded(ILogger logger, string checkpointId, int files, long bytes, int readBack, double secondsLeft);
}
