using System.Threading.Channels;
using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// The heart of the sidecar: knows the attached trainers and every checkpoint in progress, turns
/// termination triggers into one preemption flush, and feeds fully reported checkpoints to the
/// storage writer one at a time, newest first.
/// </summary>
/// <remarks>
/// All state changes happen under one lock; file I/O (copying) happens outside it, in
/// <see cref="ExecuteAsync"/>. Finished sessions are kept a while so a late WaitForCheckpoint still
/// learns the outcome.
/// </remarks>
internal sealed class FlushCoordinator : BackgroundService
{
    private const int FinishedSessionsKept = 32;

    private readonly object _gate = new();
    private readonly TrainerRegistry _trainers = new();
    private readonly Dictionary<string, CheckpointSession> _sessions = new(StringComparer.Ordinal);
    private readonly Queue<string> _finishedOrder = new();
    private readonly Channel<CheckpointSession> _ready;
    private readonly TaskCompletionSource<CheckpointOutcome?> _terminated = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly FlushPlanner _planner;
    private readonly FlushPipeline _pipeline;
    private readonly CheckpointMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<FlushCoordinator> _logger;
    private readonly CheckpointIdGenerator _ids;
    private readonly StagingRoot _stagingRoot;
    private readonly ReportDispatcher _reports;

    private CheckpointSession? _preemption;
    private CheckpointSession? _jobPreemption;
    private CheckpointSession? _drill;
    private const string DrillLabel = "drill";
    private DeadlineTimer? _drillTimer;
    private CheckpointSession? _persisting;
    private CancellationToken _stopping;
    private Task _housekeeping = Task.CompletedTask;
    private DeadlineTimer? _deadlineTimer;

    public FlushCoordinator(
        FlushPlanner planner,
        FlushPipeline pipeline,
        CheckpointStore store,
        StagingRoot stagingRoot,
        CheckpointMetrics metrics,
        IEnumerable<IFlushReporter> reporters,
        TimeProvider time,
        ILogger<FlushCoordinator> logger)
    {
        _reports = new ReportDispatcher(reporters, logger);
        _planner = planner;
        _pipeline = pipeline;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _ids = new CheckpointIdGenerator(time, store.Layout);
        _stagingRoot = stagingRoot;
        // Newest wins: a checkpoint waiting for the writer is dropped (superseded) when a newer one is ready.
        _ready = Channel.CreateBounded<CheckpointSession>(
            new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true },
            dropped => Finish(dropped, Superseded(dropped)));
    }

    /// <summary>Completes when a preemption flush has ended (null: there was nothing to flush).</summary>
    public Task<CheckpointOutcome?> Terminated => _terminated.Task;

    public bool IsTerminating
    {
        get
        {
            lock (_gate)
            {
                return _preemption is not null || _terminated.Task.IsCompleted;
            }
        }
    }

    public FlushTimings? LastFlush { get; private set; }

    /// <summary>The termination came after every trainer had detached: a normal end of training, not a preemption.</summary>
    public bool EndedAsShutdown { get; private set; }

    public string? LastCommittedId { get; private set; }

    /// <param name="peer">The process attaching; later calls naming the trainer must come from it (null: in-process callers).</param>
    /// <param name="worldSize">Ranks in the whole job across every pod; 0: the ranks attached here are the world.</param>
    /// <param name="worldId">The run of the world; every rank of one run gives the same.</param>
    public AttachedTrainer Attach(int rank, string description, TrainerPeer? peer = null, int worldSize = 0, string worldId = "")
    {
        AttachedTrainer trainer;
        lock (_gate)
        {
            trainer = _trainers.Add(rank, description, peer, worldSize, worldId);
            _metrics.SetTrainersAttached(_trainers.Count);
            _metrics.RecordTrainerAttached();
        }

        FlushLog.Attached(_logger, trainer.Id, rank, description);
        return trainer;
    }

    /// <summary>A trainer's stream closed. Checkpoints still waiting for its report cannot complete.</summary>
    public void Detach(string trainerId)
    {
        lock (_gate)
        {
            if (_trainers.Remove(trainerId) is not { } trainer)
            {
                return;
            }

            _metrics.SetTrainersAttached(_trainers.Count);

            FlushLog.Detached(_logger, trainerId, trainer.Rank);
            foreach (var session in _sessions.Values.Where(s => s.State == SessionState.Collecting
                         && s.ExpectedRanks.ContainsKey(trainerId) && !s.HasReported(trainerId)).ToList())
            {
                Finish(session, Failed(session, FlushFailureCause.TrainerLost,
                    $"rank {trainer.Rank} detached before reporting its files"));
            }
        }
    }

    /// <summary>
    /// Starts the preemption flush, or joins the one under way: hooks are at-least-once and several
    /// triggers (signal, preStop, pod watch, trainer) arrive for one termination. A later trigger may
    /// still tighten the deadline (deletionTimestamp seen after the signal) and name the cause.
    /// </summary>
    /// <param name="deletionTimestamp">When the kubelet will send SIGKILL, if the pod says so.</param>
    /// <param name="disruptionReason">The reason of the pod's DisruptionTarget condition, if any.</param>
    public TerminationTicket Terminate(TerminationSource source, DateTimeOffset? deletionTimestamp = null, string? disruptionReason = null)
    {
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            if (_preemption is { } running)
            {
                FlushLog.TriggerJoined(_logger, source);
                Refine(running, now, deletionTimestamp, disruptionReason);
                return new TerminationTicket(running.Id, running.Deadline);
            }

            if (_terminated.Task.IsCompleted)
            {
                FlushLog.TriggerJoined(_logger, source);
                return new TerminationTicket(null, null);
            }

            var cause = disruptionReason ?? source.ToString();
            if (_jobPreemption is { IsFinished: false } job)
            {
                return AdoptJobPreemption(job, source, now, deletionTimestamp, disruptionReason, cause);
            }

            if (_trainers.Count == 0)
            {
                // Trainers came and all went: the pod ends because training did (a native sidecar gets SIGTERM
                // once the trainer container has exited). Only the pod's DisruptionTarget says otherwise.
                if (_trainers.FirstAttached.IsCompleted && disruptionReason is null)
                {
                    FlushLog.TrainingEnded(_logger, source);
                    EndedAsShutdown = true;
                }
                else
                {
                    FlushLog.NothingToFlush(_logger, source);
                    _metrics.RecordPreemption(cause);
                }

                _terminated.TrySetResult(null);
                return new TerminationTicket(null, null);
            }

            var deadline = _planner.PreemptionDeadline(now, deletionTimestamp);
            var id = _ids.Next(CheckpointReason.Preemption);
            StagingDirectory staging;
            try
            {
                staging = _stagingRoot.CreateCheckpointDirectory(id);
            }
            catch (StagingUnavailableException e)
            {
                return FailPreemptionWithoutStaging(id, e, now, deadline, cause, disruptionReason is not null);
            }

            var session = NewSession(id, CheckpointReason.Preemption, staging, now, deadline);
            session.Cause = cause;
            session.CauseIsDisruptionReason = disruptionReason is not null;
            _preemption = session;
            SupersedeOlderThan(session, deadline - now);

            var command = new DumpCommand(session.Id, session.Reason, deadline, session.StagingPath);
            foreach (var trainer in _trainers.All)
            {
                trainer.Commands.Writer.TryWrite(command);
            }

            session.NotifiedAt = _time.GetUtcNow();
            ScheduleDeadline(session);
            FlushLog.PreemptionStarted(_logger, session.Id, cause, deadline, (deadline - now).TotalSeconds,
                _planner.GracePeriod.TotalSeconds, _trainers.Count);
            var started = new PreemptionStarted(session.Id, cause, now, deadline, _planner.GracePeriod, _trainers.Count);
            _reports.Dispatch(reporter => reporter.PreemptionStartedAsync(started, CancellationToken.None));
            return new TerminationTicket(session.Id, deadline);
        }
    }

    /// <summary>
    /// This pod is preempted while its trainers already dump a job-wide preemption checkpoint (another
    /// pod was preempted first): that checkpoint is this pod's preemption flush too, with the earlier
    /// of the two deadlines.
    /// </summary>
    private TerminationTicket AdoptJobPreemption(
        CheckpointSession job, TerminationSource source, DateTimeOffset now, DateTimeOffset? deletionTimestamp, string? disruptionReason, string cause)
    {
        FlushLog.TriggerJoined(_logger, source);
        _preemption = job;
        job.Cause = cause;
        job.CauseIsDisruptionReason = disruptionReason is not null;
        var own = _planner.PreemptionDeadline(now, deletionTimestamp);
        if (own < job.Deadline)
        {
            FlushLog.DeadlineTightened(_logger, job.Id, own);
            job.Deadline = own;
            ScheduleDeadline(job);
        }

        var started = new PreemptionStarted(job.Id, cause, now, job.Deadline!.Value, _planner.GracePeriod, job.ExpectedRanks.Count);
        _reports.Dispatch(reporter => reporter.PreemptionStartedAsync(started, CancellationToken.None));
        return new TerminationTicket(job.Id, job.Deadline);
    }

    /// <summary>Completes when no trainer is attached (at once if none is).</summary>
    public Task NoTrainersAttached
    {
        get
        {
            lock (_gate)
            {
                return _trainers.NoneAttached;
            }
        }
    }

    /// <summary>Completes when a trainer has attached at least once.</summary>
    public Task FirstAttached
    {
        get
        {
            lock (_gate)
            {
                return _trainers.FirstAttached;
            }
        }
    }

    /// <summary>Completes when every checkpoint in progress now has ended (committed, failed or superseded).</summary>
    public Task CheckpointsSettled()
    {
        lock (_gate)
        {
            return Task.WhenAll(_sessions.Values.Where(s => !s.IsFinished).Select(s => s.Outcome));
        }
    }

    /// <summary>
    /// Completes when every report (Event, record, push) and every retention started so far has
    /// finished: what the sidecar still owes after its trainers know their outcomes.
    /// </summary>
    public Task ReportsDrained
    {
        get
        {
            lock (_gate)
            {
                return Task.WhenAll(_reports.Drained, _housekeeping);
            }
        }
    }

    /// <summary>The trainer asks for a checkpoint itself; ranks asking at the same step share one.</summary>
    /// <param name="caller">The process asking; it must be the one that attached the trainer (null: in-process callers).</param>
    /// <param name="deadline">With <see cref="CheckpointReason.Preemption"/>: the deadline the preempted pod of the job announced.</param>
    public DumpCommand BeginCheckpoint(string trainerId, long step, CheckpointReason reason, TrainerPeer? caller = null, DateTimeOffset? deadline = null)
    {
        if (step < 0)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument, $"step {step} must be zero or more");
        }

        if (reason == CheckpointReason.Preemption)
        {
            return BeginJobPreemption(trainerId, step, deadline, caller);
        }

        lock (_gate)
        {
            RequireTrainer(trainerId, caller);
            if (_jobPreemption is { IsFinished: false })
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                    "the job is being preempted; dump the job-wide preemption checkpoint (BeginCheckpoint with PREEMPTION) instead");
            }

            if (_preemption is not null || _terminated.Task.IsCompleted)
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                    "the pod is terminating; dump the preemption checkpoint requested on the Attach stream instead");
            }

            if (_drill is { IsFinished: false } drill)
            {
                // A trainer that reaches its periodic checkpoint before noticing the drill's push writes the drill's.
                if (drill.State == SessionState.Collecting && drill.ExpectedRanks.ContainsKey(trainerId) && !drill.HasReported(trainerId)
                    && (drill.Step is null || drill.Step == step))
                {
                    return new DumpCommand(drill.Id, CheckpointReason.Manual, drill.Deadline, drill.StagingPath, Drill: true);
                }

                throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                    $"a preemption drill (checkpoint {drill.Id}) is under way; checkpoint again once it has ended");
            }

            var open = _sessions.Values.FirstOrDefault(s => s.State == SessionState.Collecting && s.Reason != CheckpointReason.Preemption);
            if (open is not null && open.ExpectedRanks.ContainsKey(trainerId) && !open.HasReported(trainerId)
                && (open.Step is null || open.Step == step) && open.PendingStep == step)
            {
                return new DumpCommand(open.Id, open.Reason, null, open.StagingPath);
            }

            if (open is not null && open.PendingStep > step)
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                    $"a newer checkpoint (step {open.PendingStep}) is being collected; this one would be superseded at once");
            }

            var now = _time.GetUtcNow();
            var id = _ids.Next(reason);
            StagingDirectory staging;
            try
            {
                staging = _stagingRoot.CreateCheckpointDirectory(id);
            }
            catch (StagingUnavailableException e)
            {
                FlushLog.NotStarted(_logger, id, reason.ToLabel(), e.Message);
                // A full volume is RESOURCE_EXHAUSTED: freeing space fixes it, retrying as such does not.
                throw new FlushRequestException(
                    StorageErrors.IsOutOfSpace(e) ? FlushRequestError.ResourceExhausted : FlushRequestError.FailedPrecondition,
                    $"checkpoint not started: {e.Message}");
            }

            var session = NewSession(id, reason, staging, now, deadline: null);
            session.PendingStep = step;
            session.NotifiedAt = now;
            if (open is not null)
            {
                Finish(open, Superseded(open));
            }

            return new DumpCommand(session.Id, session.Reason, null, session.StagingPath);
        }
    }

    /// <summary>
    /// Another pod of the job is being preempted and the ranks agreed to dump at <paramref name="step"/>:
    /// a preemption-class checkpoint with that pod's deadline (never superseded by a periodic one), or
    /// this pod's own preemption checkpoint when it is being preempted too. Ranks of this pod asking
    /// for the same step share one.
    /// </summary>
    private DumpCommand BeginJobPreemption(string trainerId, long step, DateTimeOffset? deadline, TrainerPeer? caller)
    {
        if (deadline is not { } due)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument,
                "a job-wide preemption checkpoint needs the deadline the preempted pod announced (BeginCheckpointRequest.deadline)");
        }

        lock (_gate)
        {
            var trainer = RequireTrainer(trainerId, caller);
            if (_preemption is { IsFinished: false } own)
            {
                return new DumpCommand(own.Id, own.Reason, own.Deadline, own.StagingPath);
            }

            if (_jobPreemption is { } job && (!job.IsFinished || job.PendingStep == step))
            {
                if (job.PendingStep != step)
                {
                    throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                        $"a job-wide preemption checkpoint at step {job.PendingStep} is under way; every rank must dump the same step");
                }

                if (job.IsFinished)
                {
                    throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                        $"the job-wide preemption checkpoint at step {step} has ended ({job.Outcome.Result.Status.ToString().ToLowerInvariant()})");
                }

                return new DumpCommand(job.Id, job.Reason, job.Deadline, job.StagingPath);
            }

            if (_preemption is not null || _terminated.Task.IsCompleted)
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition, "this pod's preemption checkpoint has ended");
            }

            var now = _time.GetUtcNow();
            if (due <= now)
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                    $"the deadline {due:O} has passed; there is no time left for a checkpoint");
            }

            var id = _ids.Next(CheckpointReason.Preemption);
            StagingDirectory staging;
            try
            {
                staging = _stagingRoot.CreateCheckpointDirectory(id);
            }
            catch (StagingUnavailableException e)
            {
                FlushLog.NotStarted(_logger, id, CheckpointReason.Preemption.ToLabel(), e.Message);
                throw new FlushRequestException(
                    StorageErrors.IsOutOfSpace(e) ? FlushRequestError.ResourceExhausted : FlushRequestError.FailedPrecondition,
                    $"checkpoint not started: {e.Message}");
            }

            var session = NewSession(id, CheckpointReason.Preemption, staging, now, due, isJobPreemption: true);
            session.PendingStep = step;
            session.NotifiedAt = now;
            session.Cause = JobPreemptionCause;
            _jobPreemption = session;
            SupersedeOlderThan(session, due - now);
            ScheduleDeadline(session);
            FlushLog.JobPreemptionStarted(_logger, id, trainer.Rank, step, due);
            return new DumpCommand(session.Id, session.Reason, due, session.StagingPath);
        }
    }

    /// <summary>The cause recorded for a job-wide preemption checkpoint on a pod that is not itself preempted.</summary>
    internal const string JobPreemptionCause = "JobPreemption";

    /// <summary>The cause recorded for a preemption drill.</summary>
    internal const string DrillCause = "PreemptionDrill";

    /// <summary>
    /// Rehearses a preemption flush (<c>checkpoint-sidecar drill</c>): a preemption-class checkpoint
    /// with the deadline a preemption now would get, pushed to every trainer, committed like any
    /// other. Unlike <see cref="Terminate"/> nothing is told to exit: the trainers get the dump as
    /// MANUAL with the drill mark (SDKs end the process after a PREEMPTION dump), and the sidecar
    /// keeps serving. A drill under way is joined.
    /// </summary>
    /// <exception cref="FlushRequestException">No trainer is attached, or the pod or the job is being preempted.</exception>
    public DrillTicket BeginDrill()
    {
        lock (_gate)
        {
            if (_preemption is not null || _terminated.Task.IsCompleted)
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition, "the pod is terminating; its preemption flush is the real thing, not a drill");
            }

            if (_jobPreemption is { IsFinished: false })
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition, "the job is being preempted; a drill would only compete with its checkpoint");
            }

            if (_drill is { IsFinished: false } running)
            {
                return new DrillTicket(running.Id, running.TriggeredAt, running.Deadline!.Value, _planner.GracePeriod, _planner.SafetyMargin);
            }

            if (_trainers.Count == 0)
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                    "no trainer is attached: a drill rehearses the trainers' dump, so run it while training runs");
            }

            var now = _time.GetUtcNow();
            var deadline = _planner.PreemptionDeadline(now);
            var id = _ids.Next(CheckpointReason.Preemption);
            StagingDirectory staging;
            try
            {
                staging = _stagingRoot.CreateCheckpointDirectory(id);
            }
            catch (StagingUnavailableException e)
            {
                FlushLog.NotStarted(_logger, id, DrillCause, e.Message);
                throw new FlushRequestException(
                    StorageErrors.IsOutOfSpace(e) ? FlushRequestError.ResourceExhausted : FlushRequestError.FailedPrecondition,
                    $"drill not started: {e.Message}");
            }

            var session = NewSession(id, CheckpointReason.Preemption, staging, now, deadline, isDrill: true);
            session.Cause = DrillCause;
            _drill = session;
            // As a preemption would: an older checkpoint still collecting is dropped, an upload that fits is kept.
            SupersedeOlderThan(session, deadline - now);
            var command = new DumpCommand(session.Id, CheckpointReason.Manual, deadline, session.StagingPath, Drill: true);
            foreach (var trainer in _trainers.All)
            {
                trainer.Commands.Writer.TryWrite(command);
            }

            session.NotifiedAt = _time.GetUtcNow();
            // A timer of its own: the preemption timer belongs to a real preemption, which may start meanwhile.
            _drillTimer?.Dispose();
            _drillTimer = new DeadlineTimer(_time, deadline, () => OnDeadline(session));
            FlushLog.DrillStarted(_logger, id, deadline, (deadline - now).TotalSeconds, _planner.GracePeriod.TotalSeconds, _trainers.Count);
            return new DrillTicket(id, now, deadline, _planner.GracePeriod, _planner.SafetyMargin);
        }
    }

    /// <summary>Validates a trainer's report; when every rank has reported, queues the checkpoint for storage.</summary>
    /// <exception cref="FlushRequestException">What was wrong with the report; nothing is committed.</exception>
    /// <param name="caller">The process reporting; it must be the one that attached the trainer (null: in-process callers).</param>
    public (int Reported, int Expected) Report(
        string trainerId, string checkpointId, long step, IReadOnlyList<string> files, IReadOnlyDictionary<string, string> metadata,
        TrainerPeer? caller = null)
    {
        // Validation looks up every listed file: for a report of 100k files that takes a second or
        // more, and no other call may wait on the lock meanwhile. So: check, validate unlocked, check again.
        StagingDirectory staging;
        IReadOnlySet<string> reportedByOthers;
        lock (_gate)
        {
            (_, var session, staging) = AcceptingReport(trainerId, checkpointId, step, caller);
            reportedByOthers = session.ReportedPaths;
        }

        IReadOnlyList<StagedFile> staged = [];
        var endedMeanwhile = false;
        try
        {
            staged = StagingValidator.Validate(staging, files, reportedByOthers);
        }
        catch (InvalidReportException e)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument, e.Message);
        }
        catch (ObjectDisposedException)
        {
            // The checkpoint ended (deadline, superseded) and closed its staging while its files were checked.
            endedMeanwhile = true;
        }

        lock (_gate)
        {
            // The checkpoint may have ended, or another rank reported, while the files were checked.
            var (trainer, session, _) = AcceptingReport(trainerId, checkpointId, step, caller);
            if (endedMeanwhile)
            {
                throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                    $"checkpoint {UserText.Quote(checkpointId)} ended while its report was being checked");
            }

            var reported = session.ReportedPaths;
            if (staged.FirstOrDefault(f => reported.Contains(f.RelativePath)) is { } duplicate)
            {
                throw new FlushRequestException(FlushRequestError.InvalidArgument,
                    new InvalidReportException(duplicate.RelativePath, "is listed more than once").Message);
            }

            session.AddReport(trainerId, new RankReport(trainer.Rank, step, staged, metadata), _time.GetUtcNow());
            FlushLog.Reported(_logger, checkpointId, trainer.Rank, staged.Count, step, session.ReportCount, session.ExpectedRanks.Count);
            if (session.AllReported)
            {
                session.State = SessionState.Queued;
                _ready.Writer.TryWrite(session);
            }

            return (session.ReportCount, session.ExpectedRanks.Count);
        }
    }

    /// <summary>The trainer, the checkpoint and its staging, when the checkpoint takes this trainer's report now.</summary>
    /// <exception cref="FlushRequestException">Why it does not.</exception>
    private (AttachedTrainer Trainer, CheckpointSession Session, StagingDirectory Staging) AcceptingReport(
        string trainerId, string checkpointId, long step, TrainerPeer? caller)
    {
        var trainer = RequireTrainer(trainerId, caller);
        if (!_sessions.TryGetValue(checkpointId, out var session))
        {
            throw new FlushRequestException(FlushRequestError.NotFound, $"checkpoint {UserText.Quote(checkpointId)} is not known to this sidecar");
        }

        if (session.State != SessionState.Collecting)
        {
            throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                $"checkpoint {UserText.Quote(checkpointId)} no longer accepts reports ({session.State.ToString().ToLowerInvariant()})");
        }

        if (!session.ExpectedRanks.ContainsKey(trainerId))
        {
            throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                $"rank {trainer.Rank} attached after checkpoint {UserText.Quote(checkpointId)} was requested and is not part of it");
        }

        if (session.HasReported(trainerId))
        {
            throw new FlushRequestException(FlushRequestError.AlreadyExists,
                $"rank {trainer.Rank} already reported checkpoint {UserText.Quote(checkpointId)}");
        }

        if (session.Staging is not { } staging)
        {
            throw new FlushRequestException(FlushRequestError.FailedPrecondition,
                $"checkpoint {UserText.Quote(checkpointId)} has no staging directory and cannot take reports");
        }

        if (step < 0 || (session.Step ?? session.PendingStep ?? step) != step)
        {
            throw new FlushRequestException(FlushRequestError.InvalidArgument,
                $"step {step} differs from step {session.Step ?? session.PendingStep} that this checkpoint holds");
        }

        return (trainer, session, staging);
    }

    public Task<CheckpointOutcome> WaitAsync(string checkpointId, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (!_sessions.TryGetValue(checkpointId, out var session))
            {
                throw new FlushRequestException(FlushRequestError.NotFound, $"checkpoint {UserText.Quote(checkpointId)} is not known to this sidecar");
            }

            return session.Outcome.WaitAsync(cancellationToken);
        }
    }

    public IReadOnlyList<AttachedTrainer> Trainers()
    {
        lock (_gate)
        {
            return _trainers.All.OrderBy(t => t.Rank).ToList();
        }
    }

    /// <summary>The storage writer: one checkpoint at a time, so flushes never compete for bandwidth.</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _stopping = stoppingToken;
        try
        {
            await foreach (var session in _ready.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                lock (_gate)
                {
                    if (session.IsFinished)
                    {
                        continue;
                    }

                    session.State = SessionState.Persisting;
                    _persisting = session;
                }

                var sealing = _pipeline.SealAsync(session);

                // A hung NFS server can block a write or an fsync for minutes, and no cancellation
                // reaches a blocked system call. The deadline or a newer checkpoint may decide the
                // outcome first: then the writer moves on and the blocked call ends in the background.
                await Task.WhenAny(sealing, session.Outcome).ConfigureAwait(false);
                // The flush's garbage goes back to the OS now, not at a gen0 budget of up to 128 MB.
                Hosting.MemoryTrim.Request();
                lock (_gate)
                {
                    _persisting = null;
                    if (sealing.IsCompleted)
                    {
                        if (sealing.Result is SealResult.Sealed sealedShard && !session.IsFinished)
                        {
                            // Waiting for the other pods' shards happens beside the writer, which is
                            // free for this pod's next checkpoint meanwhile.
                            session.State = SessionState.Publishing;
                            _ = PublishAndFinishAsync(session, sealedShard);
                        }
                        else if (sealing.Result is SealResult.Ended ended)
                        {
                            Finish(session, ended.Outcome);
                        }

                        continue;
                    }
                }

                FlushLog.AbandonedToStorage(_logger, session.Id, session.Outcome.Result.Status.ToString());
                _ = ObserveAbandonedAsync(session, sealing);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Host shutdown.
        }
    }

    private async Task PublishAndFinishAsync(CheckpointSession session, SealResult.Sealed sealedShard)
    {
        CheckpointOutcome outcome;
        long? retireAfter;
        using (_stopping.Register(() => CancelBecauseStopping(session)))
        {
            (outcome, retireAfter) = await _pipeline.PublishAsync(session, sealedShard).ConfigureAwait(false);
        }

        Finish(session, outcome);
        if (retireAfter is { } committedStep)
        {
            lock (_gate)
            {
                _housekeeping = _housekeeping.ContinueWith(_ => _pipeline.ApplyRetention(committedStep), TaskScheduler.Default);
            }
        }
    }

    /// <summary>Completes when retention started so far (after commits this pod published) has finished.</summary>
    internal Task HousekeepingDone
    {
        get
        {
            lock (_gate)
            {
                return _housekeeping;
            }
        }
    }

    private void CancelBecauseStopping(CheckpointSession session)
    {
        lock (_gate)
        {
            session.CancelledBecause ??= FlushFailureCause.StorageError;
        }

        session.Cancellation.Cancel();
    }

    /// <summary>What an abandoned storage call did when it finally returned: the outcome was already told.</summary>
    private async Task ObserveAbandonedAsync(CheckpointSession session, Task<SealResult> sealing)
    {
        try
        {
            if (await sealing.ConfigureAwait(false) is SealResult.Sealed)
            {
                FlushLog.SealedAfterItsOutcome(_logger, session.Id, session.Outcome.Result.Status.ToString());
            }
        }
        catch (Exception e)
        {
            FlushLog.AbandonedWriteFailed(_logger, session.Id, e.Message);
        }
    }

    public override void Dispose()
    {
        _deadlineTimer?.Dispose();
        _drillTimer?.Dispose();
        base.Dispose();
    }

    private CheckpointSession NewSession(
        string id, CheckpointReason reason, StagingDirectory? staging, DateTimeOffset now, DateTimeOffset? deadline, bool isJobPreemption = false,
        bool isDrill = false)
    {
        var session = new CheckpointSession(id, reason, staging, staging?.Path ?? Path.Combine(_stagingRoot.Path, id), now, deadline,
            _trainers.Ranks(), _trainers.World)
        {
            IsJobPreemption = isJobPreemption,
            IsDrill = isDrill,
        };
        _sessions.Add(id, session);
        return session;
    }

    /// <summary>
    /// Nothing may escape the signal path: a preemption whose staging directory cannot be created
    /// (read-only or full volume, a name taken) ends at once as a failed flush with that cause,
    /// reported like any other (metrics, log, flush record, Event), and the sidecar exits 1. Older
    /// checkpoints are left to finish: one of them committing is better than none.
    /// </summary>
    private TerminationTicket FailPreemptionWithoutStaging(
        string id, StagingUnavailableException failure, DateTimeOffset now, DateTimeOffset deadline, string cause, bool causeIsDisruptionReason)
    {
        var session = NewSession(id, CheckpointReason.Preemption, staging: null, now, deadline);
        session.Cause = cause;
        session.CauseIsDisruptionReason = causeIsDisruptionReason;
        _preemption = session;
        Finish(session, Failed(session, FlushFailureCause.StorageError, failure.Message));
        return new TerminationTicket(session.Id, deadline);
    }

    /// <summary>
    /// A preemption makes every older checkpoint obsolete, except an upload that can still finish
    /// alongside it before the deadline.
    /// </summary>
    private void SupersedeOlderThan(CheckpointSession preemption, TimeSpan timeLeft)
    {
        foreach (var session in _sessions.Values.Where(s => s != preemption && !s.IsFinished).ToList())
        {
            if (session == _persisting)
            {
                var left = session.TotalBytes - Interlocked.Read(ref session.BytesPersisted);
                if (_planner.MayFinishInFlightUpload(left, session.TotalBytes, timeLeft))
                {
                    FlushLog.InFlightKept(_logger, session.Id);
                    // It must now finish before the deadline too: no longer in the background (the pace logs the raise).
                    session.RaiseToFullSpeed();
                    continue;
                }
            }

            // Superseded now, not when a cancelled copy or publish returns: on hung storage that may
            // be never, and the writer must be free for the preemption flush.
            session.Cancellation.Cancel();
            Finish(session, Superseded(session));
        }
    }

    /// <summary>A later trigger knows more: an earlier kill time, or why the pod is disrupted.</summary>
    private void Refine(CheckpointSession session, DateTimeOffset now, DateTimeOffset? deletionTimestamp, string? disruptionReason)
    {
        if (disruptionReason is not null && !session.CauseIsDisruptionReason)
        {
            session.Cause = disruptionReason;
            session.CauseIsDisruptionReason = true;
        }

        if (deletionTimestamp is not null && !session.IsFinished)
        {
            var deadline = _planner.PreemptionDeadline(session.TriggeredAt, deletionTimestamp);
            if (deadline < session.Deadline)
            {
                FlushLog.DeadlineTightened(_logger, session.Id, deadline);
                session.Deadline = deadline;
                ScheduleDeadline(session);
            }
        }
    }

    private void ScheduleDeadline(CheckpointSession session)
    {
        _deadlineTimer?.Dispose();
        _deadlineTimer = new DeadlineTimer(_time, session.Deadline!.Value, () => OnDeadline(session));
    }

    private void OnDeadline(CheckpointSession session)
    {
        lock (_gate)
        {
            if (session.IsFinished)
            {
                return;
            }

            session.CancelledBecause = FlushFailureCause.DeadlineExceeded;
            if (session.State == SessionState.Collecting)
            {
                var missing = session.ExpectedRanks.Where(r => !session.HasReported(r.Key)).Select(r => r.Value).Order();
                Finish(session, Failed(session, FlushFailureCause.DeadlineExceeded,
                    $"the deadline passed before rank(s) {string.Join(", ", missing)} reported"));
                return;
            }

            // Queued or persisting: the copy is cancelled, and the deadline decides the outcome by
            // itself, for storage blocked in a system call may not return before SIGKILL.
            session.Cancellation.Cancel();
            Finish(session, session.DeadlinePassedOutcome());
        }
    }

    /// <summary>Records the outcome once: staging cleanup, metrics, log, then waiting callers.</summary>
    /// <remarks>
    /// Waiting callers are told last: a trainer that learns the outcome, and an operator who scrapes
    /// right after it, find the metrics already updated and the staging directory gone. Reports that
    /// leave the process (Events, flush records, pushes) run in the background and may land later.
    /// </remarks>
    private void Finish(CheckpointSession session, CheckpointOutcome outcome)
    {
        lock (_gate)
        {
            if (session.IsFinished)
            {
                return;
            }

            // Staging first: the outcome's log line is the last word on a checkpoint, and whoever
            // reads it (a person, a test) finds the staging already gone.
            RemoveStaging(session);
            RecordOutcome(session, outcome);
            session.Complete(outcome);
            _finishedOrder.Enqueue(session.Id);
            while (_finishedOrder.Count > FinishedSessionsKept)
            {
                _sessions.Remove(_finishedOrder.Dequeue());
            }

            if (session == _preemption)
            {
                _deadlineTimer?.Dispose();
                _terminated.TrySetResult(outcome);
            }

            if (outcome.Status == CheckpointStatus.Committed)
            {
                SupersedeOlderPublishing(outcome.Step ?? 0);
            }
        }
    }

    /// <summary>A newer step is committed: sealed shards of older steps still waiting for other pods are moot.</summary>
    private void SupersedeOlderPublishing(long committedStep)
    {
        foreach (var older in _sessions.Values.Where(s => s.State == SessionState.Publishing && s.Step < committedStep).ToList())
        {
            older.Cancellation.Cancel();
            Finish(older, Superseded(older));
        }
    }

    private void RecordOutcome(CheckpointSession session, CheckpointOutcome outcome)
    {
        var reason = session.IsDrill ? DrillLabel : session.Reason.ToLabel();
        // A job-wide preemption checkpoint on a pod nobody preempted is not a preemption of this pod; nor is a drill.
        if (session.Reason == CheckpointReason.Preemption && !session.IsDrill && (!session.IsJobPreemption || session == _preemption))
        {
            _metrics.RecordPreemption(session.Cause ?? TerminationSource.Signal.ToString());
        }

        switch (outcome.Status)
        {
            case CheckpointStatus.Committed:
                var t = outcome.Timings!;
                LastFlush = t;
                LastCommittedId = session.Id;
                _metrics.RecordCommitted(t, outcome.Step ?? 0, _time.GetUtcNow(), session.IsDrill ? DrillLabel : null);
                if (session.IsDrill)
                {
                    // Committed means before the deadline: the deadline timer fails the drill otherwise.
                    _metrics.RecordDrill("fits");
                }

                _planner.RecordFlush(t, fullSpeed: !session.CopiedInBackground);
                _metrics.SetPrediction(_planner.Predict());
                FlushLog.Committed(_logger, session.Id, reason, outcome.Step ?? 0, outcome.Directory!,
                    t.Notify.TotalSeconds, t.Dump.TotalSeconds, t.Copy.TotalSeconds, t.Verify.TotalSeconds,
                    t.Commit.TotalSeconds, t.Total.TotalSeconds, t.Budget.TotalSeconds, t.BudgetUsedRatio,
                    t.Bytes, t.ThroughputBytesPerSecond / 1e6);
                break;
            case CheckpointStatus.Failed when session.IsDrill:
                // Not a flush failure nor a deadline miss of the job (no alert): what the drill found out.
                _metrics.RecordDrill(outcome.FailureCause == FlushFailureCause.DeadlineExceeded ? "would_not_fit" : "failed");
                FlushLog.Failed(_logger, session.Id, reason, outcome.FailureCause!.Value.ToLabel(), outcome.Error ?? "");
                break;
            case CheckpointStatus.Failed:
                _metrics.RecordFailed(session.Reason, outcome.FailureCause!.Value);
                if (outcome.MissingRanks.Count > 0)
                {
                    _metrics.RecordMissingRanks(outcome.MissingRanks.Count);
                }

                if (outcome.FailureCause == FlushFailureCause.DeadlineExceeded)
                {
                    // Before the push below: the dying pod's recommendation is one the miss would have fitted.
                    _planner.RecordDeadlineMiss(_time.GetUtcNow() - session.TriggeredAt);
                    _metrics.SetPrediction(_planner.Predict());
                }

                FlushLog.Failed(_logger, session.Id, reason, outcome.FailureCause!.Value.ToLabel(), outcome.Error ?? "");
                break;
            default:
                if (session.IsDrill)
                {
                    _metrics.RecordDrill("superseded");
                }
                else
                {
                    _metrics.RecordSuperseded(session.Reason);
                }

                FlushLog.Superseded(_logger, session.Id, reason);
                return;
        }

        // After the metrics: a Pushgateway push must carry this flush's figures.
        var report = new FlushReport(outcome, session.Reason, session.Cause, _planner.GracePeriod, session.TriggeredAt, _time.GetUtcNow(), session.IsDrill);
        if (!session.IsDrill)
        {
            _metrics.RecordLastFlushEnded(report.DeadlineMissed, report.EndedAt);
        }

        _reports.Dispatch(reporter => reporter.FlushEndedAsync(report, CancellationToken.None));
    }

    private void RemoveStaging(CheckpointSession session)
    {
        // Staged files are of no use once the checkpoint has ended; left in place they fill the
        // staging volume with every periodic checkpoint.
        if (session.Staging is not { } staging)
        {
            return;
        }

        try
        {
            _stagingRoot.Remove(staging);
        }
        catch (IOException e)
        {
            FlushLog.StagingCleanupFailed(_logger, staging.Path, StorageErrors.Reason(e));
        }
    }

    /// <inheritdoc cref="TrainerRegistry.RefuseImpersonation"/>
    public void RefuseImpersonation(string trainerId, TrainerPeer caller)
    {
        lock (_gate)
        {
            _trainers.RefuseImpersonation(trainerId, caller);
        }
    }

    private AttachedTrainer RequireTrainer(string trainerId, TrainerPeer? caller) => _trainers.Require(trainerId, caller);

    private static CheckpointOutcome Superseded(CheckpointSession session) => session.SupersededOutcome();

    private static CheckpointOutcome Failed(CheckpointSession session, FlushFailureCause cause, string error) =>
        session.FailedOutcome(cause, error);
}

/// <summary>The drill a <c>drill</c> request started or joined, and the budget it is measured against.</summary>
public sealed record DrillTicket(string CheckpointId, DateTimeOffset TriggeredAt, DateTimeOffset Deadline, TimeSpan GracePeriod, TimeSpan SafetyMargin);

/// <summary>The preemption flush a termination trigger started or joined; both null when there was nothing to flush.</summary>
public sealed record TerminationTicket(string? CheckpointId, DateTimeOffset? Deadline);
