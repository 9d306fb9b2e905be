using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// Persists one fully reported checkpoint: copy into <c>.partial</c> with hashing, read back and
/// verify, write the manifest and commit, then apply retention. Any failure leaves the previous
/// checkpoint as LATEST and removes the partial directory.
/// </summary>
internal sealed class FlushPipeline(
    CheckpointStore store,
    IOptions<SidecarOptions> options,
    FlushPlanner planner,
    TimeProvider time,
    ILogger<FlushPipeline> logger)
{
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(1);

    private readonly CheckpointCopier _copier = new(options.Value.CopyParallelism, options.Value.CopyBufferBytes, time);

    public async Task<CheckpointOutcome> PersistAsync(CheckpointSession session)
    {
        var cancellationToken = session.Cancellation.Token;
        var files = session.Reports.SelectMany(r => r.Files).ToList();
        var totalBytes = files.Sum(f => f.Size);
        var started = time.GetUtcNow();
        using var progress = time.CreateTimer(_ => LogProgress(session, totalBytes, started), null, ProgressInterval, ProgressInterval);
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            var partial = store.CreatePartialDirectory(session.Id);
            var copy = await _copier.CopyAndVerifyAsync(files, partial, n => Interlocked.Add(ref session.BytesPersisted, n), cancellationToken)
                .ConfigureAwait(false);
            var entries = copy.Files;
            // Verification overlaps the copy; the verify phase is what remains after the last file is on storage.
            var copied = copy.LastCopied;
            var verified = time.GetUtcNow();

            // Past this point the checkpoint is complete and verified: committing takes milliseconds,
            // so a deadline passing now does not cancel it.
            cancellationToken.ThrowIfCancellationRequested();
            var notified = session.NotifiedAt ?? session.TriggeredAt;
            var dumped = session.DumpedAt ?? notified;
            var manifest = new CheckpointManifest
            {
                FormatVersion = CheckpointManifest.CurrentFormatVersion,
                Id = session.Id,
                Step = session.Step ?? 0,
                Created = verified,
                Reason = session.Reason.ToLabel(),
                Files = entries,
                Ranks = session.Reports.OrderBy(r => r.Rank).Select(r => new ManifestRank(r.Rank, r.Step, r.Metadata)).ToList(),
                Timings = new ManifestTimings(
                    planner.GracePeriod.TotalSeconds,
                    (notified - session.TriggeredAt).TotalSeconds,
                    (dumped - notified).TotalSeconds,
                    (copied - started).TotalSeconds,
                    (verified - copied).TotalSeconds),
            };
            var directory = store.Commit(manifest);
            var committed = time.GetUtcNow();

            var timings = new FlushTimings(
                session.Id, session.Reason,
                Notify: notified - session.TriggeredAt,
                Dump: dumped - notified,
                Copy: copied - started,
                Verify: verified - copied,
                Commit: committed - verified,
                Total: committed - session.TriggeredAt,
                Budget: planner.GracePeriod,
                Bytes: totalBytes);
            ApplyRetention();
            return new CheckpointOutcome(session.Id, CheckpointStatus.Committed, directory, manifest.Step, null, null, timings);
        }
        catch (OperationCanceledException)
        {
            store.DiscardPartial(session.Id);
            return session.CancelledBecause switch
            {
                null => session.SupersededOutcome(),
                FlushFailureCause.DeadlineExceeded => session.DeadlinePassedOutcome(),
                var cause => session.FailedOutcome(cause.Value, "the sidecar stopped before the checkpoint was committed"),
            };
        }
        catch (VerificationFailedException e)
        {
            store.DiscardPartial(session.Id);
            return session.FailedOutcome(FlushFailureCause.VerificationFailed, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            store.DiscardPartial(session.Id);
            return session.FailedOutcome(FlushFailureCause.StorageError, StorageErrors.Describe(e));
        }
    }

    private void ApplyRetention()
    {
        try
        {
            store.ApplyRetention(options.Value.Keep);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The new checkpoint is committed; an old one left behind costs space, not safety.
            FlushLog.RetentionFailed(logger, StorageErrors.Describe(e));
        }
    }

    private void LogProgress(CheckpointSession session, long totalBytes, DateTimeOffset started)
    {
        var now = time.GetUtcNow();
        var bytes = Interlocked.Read(ref session.BytesPersisted);
        var rate = bytes / Math.Max((now - started).TotalSeconds, 1e-3);
        var left = session.Deadline is { } deadline ? (deadline - now).TotalSeconds : double.NaN;
        FlushLog.Progress(logger, session.Id, bytes, totalBytes, rate / 1e6, left);
    }
}
