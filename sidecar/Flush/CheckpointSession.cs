using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// One checkpoint from the moment it is asked for until it is committed, fails or is superseded:
/// which trainers must report, what they reported, and the timestamps the phases are measured from.
/// Mutated under the coordinator's lock, except what the publish loop records (see its properties).
/// </summary>
internal sealed class CheckpointSession(
    string id,
    CheckpointReason reason,
    StagingDirectory? staging,
    string stagingPath,
    DateTimeOffset triggeredAt,
    DateTimeOffset? deadline,
    IReadOnlyDictionary<string, int> expectedRanks,
    JobWorld world)
{
    private readonly Dictionary<string, RankReport> _reports = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource<CheckpointOutcome> _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Id { get; } = id;

    public CheckpointReason Reason { get; } = reason;

    /// <summary>Held open while the checkpoint lasts; null only for a preemption whose directory could not be created (it fails at once).</summary>
    public StagingDirectory? Staging { get; } = staging;

    /// <summary>Where the trainers dump, as the dump request tells them.</summary>
    public string StagingPath { get; } = stagingPath;

    public DateTimeOffset TriggeredAt { get; } = triggeredAt;

    /// <summary>May move earlier when a later trigger learns the pod's deletionTimestamp.</summary>
    public DateTimeOffset? Deadline { get; set; } = deadline;

    /// <summary>Why the pod is terminating, for preemptions (metric label, Event, flush record).</summary>
    public string? Cause { get; set; }

    public bool CauseIsDisruptionReason { get; set; }

    /// <summary>The world the ranks declared when they attached: whose shards together make the checkpoint.</summary>
    public JobWorld World { get; } = world;

    /// <summary>
    /// A preemption-class checkpoint asked for by the trainers because another pod of the job is being
    /// preempted (BeginCheckpoint with PREEMPTION); this pod is not terminating, unless a trigger of its own joins.
    /// </summary>
    public bool IsJobPreemption { get; init; }

    /// <summary>
    /// A preemption drill: a preemption-class checkpoint with a real deadline on a pod that is not
    /// terminating. Marked in its record, Event, metrics and log, and not counted as a preemption.
    /// </summary>
    public bool IsDrill { get; init; }

    private CopyPace? _pace;
    private int _fullSpeed;

    /// <summary>
    /// The pace the pipeline copies this checkpoint at; raised at once when the coordinator asked for
    /// full speed before the copy began. The pipeline sets it and the coordinator raises it, each
    /// outside the other's lock: both sides exchange with full fences, so a raise is never lost.
    /// </summary>
    public CopyPace UsePace(CopyPace pace)
    {
        Interlocked.Exchange(ref _pace, pace);
        if (Volatile.Read(ref _fullSpeed) == 1)
        {
            pace.RaiseToFullSpeed();
        }

        return pace;
    }

    /// <summary>From now on this checkpoint copies at full speed (a preemption lets it finish).</summary>
    /// <returns>True when a background copy was raised.</returns>
    public bool RaiseToFullSpeed()
    {
        Interlocked.Exchange(ref _fullSpeed, 1);
        return Volatile.Read(ref _pace)?.RaiseToFullSpeed() ?? false;
    }

    /// <summary>Its copy ran in the background, at least in part: its throughput is not the storage's full speed.</summary>
    public bool CopiedInBackground => Volatile.Read(ref _pace)?.StartedInBackground ?? false;

    /// <summary>When this pod's shard was sealed on storage; the job commit is waited for from then.</summary>
    /// <remarks>Written by the publish loop, outside the coordinator's lock: nothing else writes it.</remarks>
    public DateTimeOffset? SealedAt { get; set; }

    /// <summary>The ranks the last look at storage found without a sealed shard (while publishing).</summary>
    /// <remarks>
    /// Written by the publish loop outside the coordinator's lock, read when the deadline passes: a
    /// reference swapped whole, so a reader sees the last look or the one before, never a torn list.
    /// </remarks>
    public IReadOnlyList<int> MissingRanks { get; set; } = [];

    /// <summary>Trainer id to rank, fixed when the checkpoint is asked for.</summary>
    public IReadOnlyDictionary<string, int> ExpectedRanks { get; } = expectedRanks;

    public DateTimeOffset? NotifiedAt { get; set; }

    public DateTimeOffset? DumpedAt { get; private set; }

    /// <summary>The step a trainer named when it asked for this checkpoint (not for preemptions).</summary>
    public long? PendingStep { get; set; }

    /// <summary>Why the copy was cancelled; null with a cancelled token means a newer checkpoint superseded it.</summary>
    public FlushFailureCause? CancelledBecause { get; set; }

    /// <summary>The step the first report named; every rank must agree.</summary>
    public long? Step { get; private set; }

    public SessionState State { get; set; } = SessionState.Collecting;

    /// <summary>Cancels the copy when the deadline passes or a preemption supersedes it.</summary>
    public CancellationTokenSource Cancellation { get; } = new();

    /// <summary>Bytes persisted so far; read for progress and to plan a preemption against it.</summary>
    public long BytesPersisted;

    public Task<CheckpointOutcome> Outcome => _outcome.Task;

    public bool IsFinished => _outcome.Task.IsCompleted;

    public int ReportCount => _reports.Count;

    public bool AllReported => _reports.Count == ExpectedRanks.Count;

    public IReadOnlyCollection<RankReport> Reports => _reports.Values;

    public long TotalBytes => _reports.Values.Sum(r => r.Files.Sum(f => f.Size));

    public IReadOnlySet<string> ReportedPaths =>
        _reports.Values.SelectMany(r => r.Files).Select(f => f.RelativePath).ToHashSet(StringComparer.Ordinal);

    public bool HasReported(string trainerId) => _reports.ContainsKey(trainerId);

    public void AddReport(string trainerId, RankReport report, DateTimeOffset now)
    {
        _reports.Add(trainerId, report);
        Step ??= report.Step;
        if (AllReported)
        {
            DumpedAt = now;
        }
    }

    public CheckpointOutcome SupersededOutcome() =>
        new(Id, CheckpointStatus.Superseded, null, Step, "superseded by a newer checkpoint", null, null);

    public CheckpointOutcome FailedOutcome(FlushFailureCause cause, string error) =>
        new(Id, CheckpointStatus.Failed, null, Step, error, cause, null);

    public CheckpointOutcome DeadlinePassedOutcome() =>
        State == SessionState.Publishing
            ? FailedOutcome(FlushFailureCause.JobIncomplete,
                $"this pod's shard was sealed, but rank(s) {JobWideText.Ranks(MissingRanks)} of the world had none when the deadline passed")
                with { MissingRanks = MissingRanks }
            : FailedOutcome(FlushFailureCause.DeadlineExceeded,
                $"the deadline passed after {Interlocked.Read(ref BytesPersisted)} of {TotalBytes} bytes were copied");

    /// <summary>Tells every waiting caller the outcome; called once, after the outcome is recorded.</summary>
    public void Complete(CheckpointOutcome outcome)
    {
        State = SessionState.Finished;
        _outcome.SetResult(outcome);
    }
}

internal enum SessionState
{
    /// <summary>Waiting for every expected rank to report.</summary>
    Collecting,

    /// <summary>Every rank reported; waiting for the storage writer.</summary>
    Queued,

    /// <summary>This pod's shard is being copied, verified and sealed.</summary>
    Persisting,

    /// <summary>The shard is sealed; waiting for the other pods' shards and the job commit.</summary>
    Publishing,

    Finished,
}

internal sealed record RankReport(int Rank, long Step, IReadOnlyList<StagedFile> Files, IReadOnlyDictionary<string, string> Metadata);
