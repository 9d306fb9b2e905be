using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// Persists one fully reported checkpoint in two steps: <see cref="SealAsync"/> copies this pod's
/// shard to storage, verifies it and seals it; <see cref="PublishAsync"/> then waits until shards
/// cover every rank of the world and the job manifest is written (by this pod or another). Any
/// failure leaves the newest committed step as the one resumed from.
/// </summary>
internal sealed class FlushPipeline(
    ICheckpointTarget target,
    IOptions<SidecarOptions> options,
    FlushPlanner planner,
    TimeProvider time,
    ILogger<FlushPipeline> logger)
{
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How often a sealed pod looks for the other shards: one directory listing each time, so the
    /// commit lands within this of the slowest shard's seal.
    /// </summary>
    internal static readonly TimeSpan PublishPollInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// How long a pod that finds the world covered by its poll, not by its own seal, leaves writing the
    /// job manifest to the pod whose seal covered it (which does so in the same call). Without it every
    /// pod polling in that moment would read every shard and write a manifest: O(pods²) reads.
    /// </summary>
    internal static readonly TimeSpan PublishTakeoverDelay = TimeSpan.FromMilliseconds(300);

    /// <summary>Copies, verifies and seals this pod's shard.</summary>
    /// <returns>The sealed shard, or the outcome when the checkpoint ended here (failed, superseded, or its step already committed).</returns>
    public async Task<SealResult> SealAsync(CheckpointSession session)
    {
        var cancellationToken = session.Cancellation.Token;
        var files = session.Reports.SelectMany(r => r.Files).ToList();
        var totalBytes = files.Sum(f => f.Size);
        var step = session.Step ?? 0;
        var started = time.GetUtcNow();
        if (LocalWorldProblem(session) is { } problem)
        {
            return new SealResult.Ended(session.FailedOutcome(FlushFailureCause.JobIncomplete, problem));
        }

        if (target.FindCommitted(step) is { } committed)
        {
            // The same step was committed before (a resumed job preempted before its next step): those
            // files are this state, and committed checkpoints are never replaced.
            FlushLog.StepAlreadyCommitted(logger, session.Id, committed.Id);
            return new SealResult.Ended(CommittedOutcome(session, committed, Timings(session, started, started, started, started, started, totalBytes: 0)));
        }

        using var progress = time.CreateTimer(_ => LogProgress(session, totalBytes, started), null, ProgressInterval, ProgressInterval);
        ShardName? written = null;
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Trainers that gave no world size are a single-pod job: their ranks (0..n-1, checked above) are the world.
            var world = session.World.Size > 0 ? session.World : new JobWorld(session.Reports.Count, "");
            // A deadline (preemption, drill) may leave no time to read every file back: the budget decides file by file.
            var readBack = DeadlineReadBackBudget.For(options.Value, session.Deadline, planner, totalBytes, time);
            var request = new ShardRequest(step, world, session.Reason.ToLabel(), files,
                session.Reports.OrderBy(r => r.Rank).Select(r => new ManifestRank(r.Rank, r.Step, r.Metadata)).ToList(), CopyPolicyFor(session, readBack));
            var shard = await target.WriteAsync(request, n => Interlocked.Add(ref session.BytesPersisted, n), cancellationToken).ConfigureAwait(false);
            written = shard.Name;
            (readBack as DeadlineReadBackBudget)?.LogIfDegraded(logger, session.Id);
            // Verification overlaps the copy; the verify phase is what remains after the last file is on storage.
            var copied = shard.LastCopied;
            var verified = time.GetUtcNow();

            // Past this point the shard is complete and verified: sealing takes milliseconds, so a
            // deadline passing now does not cancel it.
            cancellationToken.ThrowIfCancellationRequested();
            var notified = session.NotifiedAt ?? session.TriggeredAt;
            var dumped = session.DumpedAt ?? notified;
            var sealedShard = target.Seal(shard, new ManifestTimings(
                planner.GracePeriod.TotalSeconds,
                (notified - session.TriggeredAt).TotalSeconds,
                (dumped - notified).TotalSeconds,
                (copied - started).TotalSeconds,
                (verified - copied).TotalSeconds), time.GetUtcNow());
            return new SealResult.Sealed(sealedShard, started, copied, verified, totalBytes);
        }
        catch (OperationCanceledException)
        {
            Discard(written, step);
            return new SealResult.Ended(session.CancelledBecause switch
            {
                null => session.SupersededOutcome(),
                FlushFailureCause.DeadlineExceeded => session.DeadlinePassedOutcome(),
                var cause => session.FailedOutcome(cause.Value, "the sidecar stopped before the checkpoint was committed"),
            });
        }
        catch (VerificationFailedException e)
        {
            Discard(written, step);
            return new SealResult.Ended(session.FailedOutcome(FlushFailureCause.VerificationFailed, e.Message));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Discard(written, step);
            return new SealResult.Ended(session.FailedOutcome(FlushFailureCause.StorageError, StorageErrors.Describe(e)));
        }
    }

    /// <summary>
    /// How this checkpoint's bytes are moved. Periodic checkpoints upload in the background
    /// (CHECKPOINT_PERIODIC_*), so training keeps its CPU and disk; preemption and drill flushes race a
    /// deadline, and a manual checkpoint is one the trainer usually waits for: those go at full speed.
    /// </summary>
    internal CopyPolicy CopyPolicyFor(CheckpointSession session, IReadBackBudget readBack)
    {
        var o = options.Value;
        var pace = session.Reason == CheckpointReason.Periodic && !session.IsDrill
            ? CopyPace.Background(o.PeriodicPace, time, logger, session.Id)
            : CopyPace.FullSpeed();
        return new CopyPolicy(session.UsePace(pace), readBack);
    }

    /// <summary>
    /// Waits for the job commit of a sealed shard: looks at storage every <see cref="PublishPollInterval"/>
    /// and writes the job manifest itself as soon as shards cover the world. Ends when the step is
    /// committed, the session is cancelled (deadline, superseded), or the commit timeout passes for
    /// a checkpoint without a deadline.
    /// </summary>
    /// <returns>The outcome, and the step whose retention this pod owes once it has told its ranks (it wrote the manifest).</returns>
    public async Task<(CheckpointOutcome Outcome, long? RetireAfter)> PublishAsync(CheckpointSession session, SealResult.Sealed sealedShard)
    {
        var cancellationToken = session.Cancellation.Token;
        var sealedAt = time.GetUtcNow();
        session.SealedAt = sealedAt;
        var giveUp = session.Deadline ?? sealedAt + options.Value.JobCommitTimeout;
        var announced = false;
        var first = true;
        DateTimeOffset? coveredSince = null;
        try
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var now = time.GetUtcNow();
                // The pod whose own seal covers the world writes the manifest at once; the others only
                // look, and take over when it has not appeared a while later (that pod died), or when
                // the deadline leaves no time to wait.
                var mayWrite = first || now - coveredSince >= PublishTakeoverDelay || giveUp - now <= PublishTakeoverDelay;
                first = false;
                var result = target.TryPublish(sealedShard.Shard, now, mayWrite);
                if (result is PublishResult.Committed committed)
                {
                    if (!committed.IncludesThisShard)
                    {
                        // Another attempt's shard holds these ranks in the commit: this one is garbage.
                        target.Discard(sealedShard.Shard.Name, sealedShard.Shard.Manifest.Step);
                    }

                    var timings = Timings(session, sealedShard.Started, sealedShard.Copied, sealedShard.Verified, time.GetUtcNow(), sealedAt, sealedShard.Bytes)
                        with { ReadBackBytes = ReadBackBytes(sealedShard.Shard.Manifest.Files) };
                    if (committed.PublishedHere && committed.Manifest.Shards.Count > 1)
                    {
                        FlushLog.JobCommitPublished(logger, committed.Manifest.Id, committed.Manifest.Shards.Count, committed.Manifest.WorldSize);
                    }

                    // Retention is owed by the pod that wrote the manifest, after its ranks know: deleting
                    // an old step of every pod takes a while, and nobody waits on it.
                    return (CommittedOutcome(session, committed.Manifest, timings), committed.PublishedHere ? committed.Manifest.Step : null);
                }

                var missing = ((PublishResult.Waiting)result).MissingRanks;
                session.MissingRanks = missing;
                if (missing.Count == 0 && coveredSince is null)
                {
                    var stepId = LayoutStep(sealedShard);
                    FlushLog.WorldCovered(logger, session.Id, stepId, PublishTakeoverDelay.TotalMilliseconds);
                }

                coveredSince = missing.Count == 0 ? coveredSince ?? now : null;
                if (!announced && missing.Count > 0)
                {
                    var stepId = LayoutStep(sealedShard);
                    var missingText = JobWideText.Ranks(missing);
                    FlushLog.WaitingForShards(logger, session.Id, stepId, missingText, missing.Count, session.World.Size);
                    announced = true;
                }

                if (time.GetUtcNow() >= giveUp)
                {
                    var why = missing.Count > 0
                        ? $"rank(s) {JobWideText.Ranks(missing)} of the world had none"
                        : "every rank had one, but the job manifest could not be read back";
                    return (session.FailedOutcome(FlushFailureCause.JobIncomplete,
                        $"this pod's shard was sealed, but {why} after {(giveUp - sealedAt).TotalSeconds:F0} s") with { MissingRanks = missing }, null);
                }

                var nextPoll = Task.Delay(PublishPollInterval, time, cancellationToken);
                FlushLog.NextPoll(logger, session.Id, PublishPollInterval.TotalMilliseconds);
                await nextPoll.ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            return (session.CancelledBecause switch
            {
                null => session.SupersededOutcome(),
                FlushFailureCause.DeadlineExceeded => session.DeadlinePassedOutcome(),
                var cause => session.FailedOutcome(cause.Value, "the sidecar stopped before the job commit"),
            }, null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (session.FailedOutcome(FlushFailureCause.StorageError, StorageErrors.Describe(e)), null);
        }
    }

    /// <summary>
    /// Trainers that gave no world size are a single-pod job: their ranks are the world, and must be
    /// 0..n-1, or no checkpoint of theirs could ever be resumed from as a whole.
    /// </summary>
    private static string? LocalWorldProblem(CheckpointSession session)
    {
        if (session.World.Size > 0)
        {
            return null;
        }

        var ranks = session.Reports.Select(r => r.Rank).Order().ToList();
        return ranks.SequenceEqual(Enumerable.Range(0, ranks.Count))
            ? null
            : $"rank(s) {JobWideText.Ranks(ranks)} attached without a world size, so they must be ranks 0..{ranks.Count - 1} of a single-pod job; "
              + "trainers of a job that spans pods give world_size when they attach (the SDKs do under torch.distributed)";
    }

    private static string LayoutStep(SealResult.Sealed sealedShard) => CheckpointLayout.StepName(sealedShard.Shard.Manifest.Step);

    private CheckpointOutcome CommittedOutcome(CheckpointSession session, JobManifest manifest, FlushTimings timings)
    {
        var rank = session.Reports.Count > 0 ? session.Reports.Min(r => r.Rank) : 0;
        return new CheckpointOutcome(session.Id, CheckpointStatus.Committed, target.DirectoryOf(manifest, rank), manifest.Step, null, null, timings);
    }

    private FlushTimings Timings(
        CheckpointSession session, DateTimeOffset started, DateTimeOffset copied, DateTimeOffset verified, DateTimeOffset committed,
        DateTimeOffset sealedAt, long totalBytes)
    {
        var notified = session.NotifiedAt ?? session.TriggeredAt;
        var dumped = session.DumpedAt ?? notified;
        return new FlushTimings(
            session.Id, session.Reason,
            Notify: notified - session.TriggeredAt,
            Dump: dumped - notified,
            Copy: copied - started,
            Verify: verified - copied,
            Commit: committed - verified,
            Total: committed - session.TriggeredAt,
            Budget: planner.GracePeriod,
            Bytes: totalBytes,
            CommitWait: committed - sealedAt);
    }

    /// <summary>What the checkpoint's files say was read back; a file without the field (an older copier) was, as before.</summary>
    private static long ReadBackBytes(IReadOnlyList<ManifestFile> files) =>
        files.Where(f => f.Verification is null or ManifestFile.ReadBack).Sum(f => f.Size);

    private void Discard(ShardName? written, long step)
    {
        if (written is not null)
        {
            target.Discard(written, step);
        }
    }

    /// <summary>Job-wide retention after <paramref name="committedStep"/>, by the pod that wrote its manifest (the others would race it for nothing).</summary>
    public void ApplyRetention(long committedStep)
    {
        try
        {
            target.ApplyRetention(options.Value.Keep, committedStep);
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

/// <summary>How sealing a shard ended.</summary>
internal abstract record SealResult
{
    /// <summary>On storage and sealed; the job commit is still to come.</summary>
    public sealed record Sealed(SealedShard Shard, DateTimeOffset Started, DateTimeOffset Copied, DateTimeOffset Verified, long Bytes) : SealResult;

    /// <summary>The checkpoint ended before or while sealing.</summary>
    public sealed record Ended(CheckpointOutcome Outcome) : SealResult;
}
