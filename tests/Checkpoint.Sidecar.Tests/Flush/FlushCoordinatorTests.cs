using Checkpoint.Sidecar.Configuration;
using Checkpoint.Sidecar.Flush;
using Checkpoint.Sidecar.Metrics;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace Checkpoint.Sidecar.Tests.Flush;

public sealed class FlushCoordinatorTests : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Margin = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private static readonly IReadOnlyDictionary<string, string> NoMetadata = new Dictionary<string, string>();

    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 29, 2, 45, 0, TimeSpan.Zero));
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly CheckpointStore _store;
    private readonly StagingRoot _stagingRoot;
    private readonly FlushCoordinator _coordinator;
    private readonly RecordingReporter _reporter = new();
    private readonly ProbeLogger<FlushCoordinator> _logger = new();
    private readonly ProbeLogger<FlushPipeline> _pipelineLogger = new();

    public FlushCoordinatorTests()
    {
        var options = Options.Create(new SidecarOptions
        {
            StagingDir = _temp.CreateDirectory("staging"),
            StorageDir = _temp.CreateDirectory("storage"),
            SocketPath = _temp.Combine("sidecar.sock"),
            GracePeriodSeconds = Grace.TotalSeconds,
            SafetyMarginSeconds = Margin.TotalSeconds,
            Keep = 3,
            CopyParallelism = 2,
            CopyBufferKiB = 64,
            JobName = "job",
            PodNamespace = "ns",
            KubernetesEnabled = false,
        });
        var planner = new FlushPlanner(Grace, Margin);
        _store = new CheckpointStore(
            new CheckpointLayout(options.Value.StorageDir, options.Value.PodNamespace, options.Value.JobName),
            NullLogger<CheckpointStore>.Instance);
        var target = new SharedDirectoryTarget(
            _store.Layout, new CheckpointCopier(2, options.Value.CopyBufferBytes, _time), "pod-a", NullLogger<SharedDirectoryTarget>.Instance);
        var pipeline = new FlushPipeline(target, options, planner, _time, _pipelineLogger);
        _stagingRoot = new StagingRoot(options.Value.StagingDir, NullLogger<StagingRoot>.Instance);
        _coordinator = new FlushCoordinator(
            planner, pipeline, _store, _stagingRoot, new CheckpointMetrics(_registry), [_reporter], _time, _logger);
    }

    public Task InitializeAsync() => _coordinator.StartAsync(CancellationToken.None);

    // xunit calls DisposeAsync, then Dispose.
    public Task DisposeAsync() => _coordinator.StopAsync(CancellationToken.None).WaitAsync(Bound);

    public void Dispose()
    {
        _coordinator.Dispose();
        _stagingRoot.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public void Terminate_TwoTrainers_SendsSameDumpCommandToBoth()
    {
        var (rank0, rank1) = AttachTwo();
        var now = _time.GetUtcNow();

        var ticket = _coordinator.Terminate(TerminationSource.Signal);

        Assert.True(rank0.Commands.Reader.TryRead(out var command0));
        Assert.True(rank1.Commands.Reader.TryRead(out var command1));
        Assert.Equal(command0, command1);
        Assert.Equal(ticket.CheckpointId, command0.CheckpointId);
        Assert.Equal(CheckpointReason.Preemption, command0.Reason);
        Assert.Equal(now + Grace - Margin, command0.Deadline);
        Assert.Equal(now + Grace - Margin, ticket.Deadline);
        Assert.True(Directory.Exists(command0.StagingDirectory));
        Assert.True(_coordinator.IsTerminating);
    }

    [Fact]
    public void Terminate_DeletionTimestamp_DeadlineIsDeletionMinusMargin()
    {
        var (rank0, _) = AttachTwo();
        var deletion = _time.GetUtcNow() + TimeSpan.FromSeconds(10);

        var ticket = _coordinator.Terminate(TerminationSource.PodWatch, deletion);

        Assert.True(rank0.Commands.Reader.TryRead(out var command));
        Assert.Equal(deletion - Margin, command.Deadline);
        Assert.Equal(deletion - Margin, ticket.Deadline);
    }

    [Fact]
    public void Terminate_Twice_JoinsTheOneFlush()
    {
        var (rank0, rank1) = AttachTwo();
        var first = _coordinator.Terminate(TerminationSource.Signal);
        _time.Advance(TimeSpan.FromSeconds(1));

        var second = _coordinator.Terminate(TerminationSource.PreStopHook);

        Assert.Equal(first, second);
        Assert.NotNull(second.CheckpointId);
        Assert.True(rank0.Commands.Reader.TryRead(out _));
        Assert.False(rank0.Commands.Reader.TryRead(out _));
        Assert.True(rank1.Commands.Reader.TryRead(out _));
        Assert.False(rank1.Commands.Reader.TryRead(out _));
    }

    [Fact]
    public async Task Report_AllRanksOfPreemption_CommitsBothRanksFiles()
    {
        var (rank0, rank1) = AttachTwo();
        var ticket = _coordinator.Terminate(TerminationSource.Signal);
        var id = ticket.CheckpointId!;
        Assert.True(rank0.Commands.Reader.TryRead(out var command));
        var outcomeTask = _coordinator.WaitAsync(id, CancellationToken.None);

        var files0 = Dump(command, rank: 0, seed: 1);
        Assert.Equal((1, 2), _coordinator.Report(rank0.Id, id, 100, files0, new Dictionary<string, string> { ["host"] = "a" }));
        Assert.False(outcomeTask.IsCompleted);
        Assert.False(_coordinator.Terminated.IsCompleted);
        Assert.Null(_store.ReadLatestId());

        _time.Advance(TimeSpan.FromSeconds(3));
        var files1 = Dump(command, rank: 1, seed: 2);
        Assert.Equal((2, 2), _coordinator.Report(rank1.Id, id, 100, files1, NoMetadata));
        var outcome = await outcomeTask.WaitAsync(Bound);

        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        Assert.Equal(id, outcome.CheckpointId);
        Assert.Equal(100, outcome.Step);
        // One pod, one shard: its directory under the step holds both ranks' files.
        Assert.Equal(_store.Layout.StepDirectory(100), Path.GetDirectoryName(outcome.Directory));
        Assert.Equal("step-000000100", _store.ReadLatestId());
        var manifest = JobManifest.FromUtf8Json(await File.ReadAllBytesAsync(Path.Combine(_store.Layout.StepDirectory(100), "manifest.json")));
        Assert.Equal("step-000000100", manifest.Id);
        Assert.Equal("preemption", manifest.Reason);
        Assert.Equal(100, manifest.Step);
        Assert.Equal(2, manifest.WorldSize);
        var shard = Assert.Single(manifest.Shards);
        Assert.Equal(Path.GetFileName(outcome.Directory), shard.Directory);
        Assert.Equal([.. files0, .. files1], shard.Files.Select(f => f.Path).Order(StringComparer.Ordinal));
        Assert.Equal([0, 1], shard.Ranks.Select(r => r.Rank));
        Assert.Equal("a", shard.Ranks[0].Metadata["host"]);
        foreach (var file in shard.Files)
        {
            Assert.Equal(
                await File.ReadAllBytesAsync(Path.Combine(_temp.Path, "expected", file.Path)),
                await File.ReadAllBytesAsync(Path.Combine(outcome.Directory!, file.Path)));
        }

        Assert.False(Directory.Exists(command.StagingDirectory));
        Assert.Equal(outcome, await _coordinator.Terminated.WaitAsync(Bound));

        var timings = outcome.Timings!;
        Assert.Equal(TimeSpan.FromSeconds(3), timings.Dump);
        Assert.Equal(TimeSpan.FromSeconds(3), timings.Total);
        Assert.Equal(Grace, timings.Budget);
        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "preemption"), ("outcome", "committed")));
        Assert.Equal(timings.Total / Grace, samples.Value("checkpoint_last_flush_budget_used_ratio"), 1e-9);
        Assert.Equal(0.1, samples.Value("checkpoint_last_flush_budget_used_ratio"), 1e-9);
        Assert.Equal(100, samples.Value("checkpoint_last_committed_step"));
        Assert.Equal(0, samples.Value("checkpoint_deadline_misses_total"));
    }

    [Theory]
    [InlineData(CheckpointStatus.Committed)]
    [InlineData(CheckpointStatus.Failed)]
    public async Task Finish_OutcomeIsRecordedBeforeWaitersLearnIt(CheckpointStatus status)
    {
        // A trainer that learns the outcome, and an operator who scrapes right after, must find the
        // metrics already updated: the outcome is logged (right after the metrics are set) while
        // waiters still wait.
        var (rank0, rank1) = AttachTwo();
        var command = _coordinator.BeginCheckpoint(rank0.Id, 7, CheckpointReason.Periodic);
        _coordinator.BeginCheckpoint(rank1.Id, 7, CheckpointReason.Periodic);
        var outcomeTask = _coordinator.WaitAsync(command.CheckpointId, CancellationToken.None);
        bool? waitersKnewWhenRecorded = null;
        _logger.OnLog = eventId =>
        {
            if (eventId.Name is "Committed" or "Failed")
            {
                waitersKnewWhenRecorded = outcomeTask.IsCompleted;
            }
        };

        _coordinator.Report(rank0.Id, command.CheckpointId, 7, Dump(command, rank: 0, seed: 1), NoMetadata);
        if (status == CheckpointStatus.Failed)
        {
            _coordinator.Detach(rank1.Id);
        }
        else
        {
            _coordinator.Report(rank1.Id, command.CheckpointId, 7, Dump(command, rank: 1, seed: 2), NoMetadata);
        }

        var outcome = await outcomeTask.WaitAsync(Bound);
        Assert.Equal(status, outcome.Status);
        Assert.False(waitersKnewWhenRecorded, "the outcome was recorded after waiters had learned it (or never)");
        Assert.False(Directory.Exists(command.StagingDirectory));
        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "periodic"), ("outcome", status == CheckpointStatus.Committed ? "committed" : "failed")));
    }

    [Fact]
    public void Report_UnknownCheckpoint_ThrowsNotFound()
    {
        var (rank0, _) = AttachTwo();

        var e = Assert.Throws<FlushRequestException>(
            () => _coordinator.Report(rank0.Id, "20261129T024500000Z-periodic", 1, ["a.bin"], NoMetadata));

        Assert.Equal(FlushRequestError.NotFound, e.Error);
    }

    [Fact]
    public void Report_UnknownTrainer_ThrowsNotFound()
    {
        AttachTwo();
        var id = _coordinator.Terminate(TerminationSource.Signal).CheckpointId!;

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.Report("trainer-99-rank-9", id, 1, ["a.bin"], NoMetadata));

        Assert.Equal(FlushRequestError.NotFound, e.Error);
    }

    [Theory]
    [InlineData("../../outside.bin")]
    [InlineData("/etc/passwd")]
    [InlineData("rank1/missing.bin")]
    [InlineData("manifest.json")]
    public async Task Report_BadFile_ThrowsInvalidArgumentAndCommitsNothing(string badPath)
    {
        var (rank0, rank1) = AttachTwo();
        var id = _coordinator.Terminate(TerminationSource.Signal).CheckpointId!;
        Assert.True(rank0.Commands.Reader.TryRead(out var command));
        _coordinator.Report(rank0.Id, id, 7, Dump(command, rank: 0, seed: 1), NoMetadata);
        TempDirectory.WriteFile(_temp.Path, "outside.bin", [1]);
        TempDirectory.WriteFile(command.StagingDirectory, "manifest.json", [1]);
        var files1 = Dump(command, rank: 1, seed: 2);

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.Report(rank1.Id, id, 7, [.. files1, badPath], NoMetadata));

        Assert.Equal(FlushRequestError.InvalidArgument, e.Error);
        Assert.Contains(badPath, e.Message, StringComparison.Ordinal);
        Assert.False(_coordinator.WaitAsync(id, CancellationToken.None).IsCompleted);
        Assert.Null(_store.ReadLatestId());
        Assert.Empty(_store.Layout.CommittedCandidates());

        // The rejected report did not count: the rank may report again, correctly.
        Assert.Equal((2, 2), _coordinator.Report(rank1.Id, id, 7, files1, NoMetadata));
        var outcome = await _coordinator.WaitAsync(id, CancellationToken.None).WaitAsync(Bound);
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        Assert.Empty(Directory.EnumerateFiles(outcome.Directory!, "outside.bin", SearchOption.AllDirectories));
    }

    [Fact]
    public void Report_SameRankTwice_ThrowsAlreadyExists()
    {
        var (rank0, _) = AttachTwo();
        var id = _coordinator.Terminate(TerminationSource.Signal).CheckpointId!;
        Assert.True(rank0.Commands.Reader.TryRead(out var command));
        _coordinator.Report(rank0.Id, id, 7, Dump(command, rank: 0, seed: 1), NoMetadata);
        TempDirectory.WriteFile(command.StagingDirectory, "rank0/again.bin", [1]);

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.Report(rank0.Id, id, 7, ["rank0/again.bin"], NoMetadata));

        Assert.Equal(FlushRequestError.AlreadyExists, e.Error);
    }

    [Fact]
    public void Report_StepDiffersFromOtherRank_ThrowsInvalidArgument()
    {
        var (rank0, rank1) = AttachTwo();
        var id = _coordinator.Terminate(TerminationSource.Signal).CheckpointId!;
        Assert.True(rank0.Commands.Reader.TryRead(out var command));
        _coordinator.Report(rank0.Id, id, 7, Dump(command, rank: 0, seed: 1), NoMetadata);

        var e = Assert.Throws<FlushRequestException>(
            () => _coordinator.Report(rank1.Id, id, 8, Dump(command, rank: 1, seed: 2), NoMetadata));

        Assert.Equal(FlushRequestError.InvalidArgument, e.Error);
        Assert.False(_coordinator.WaitAsync(id, CancellationToken.None).IsCompleted);
    }

    [Fact]
    public async Task Report_StepDiffersFromBeginCheckpoint_ThrowsInvalidArgument()
    {
        var (rank0, rank1) = AttachTwo();
        var command = _coordinator.BeginCheckpoint(rank0.Id, 5, CheckpointReason.Periodic);

        var e = Assert.Throws<FlushRequestException>(
            () => _coordinator.Report(rank0.Id, command.CheckpointId, 6, Dump(command, rank: 0, seed: 1), NoMetadata));

        Assert.Equal(FlushRequestError.InvalidArgument, e.Error);
        _coordinator.BeginCheckpoint(rank1.Id, 5, CheckpointReason.Periodic);
        Assert.Equal((1, 2), _coordinator.Report(rank0.Id, command.CheckpointId, 5, Dump(command, rank: 0, seed: 1), NoMetadata));
        Assert.Equal((2, 2), _coordinator.Report(rank1.Id, command.CheckpointId, 5, Dump(command, rank: 1, seed: 2), NoMetadata));
        Assert.Equal(CheckpointStatus.Committed, (await _coordinator.WaitAsync(command.CheckpointId, CancellationToken.None).WaitAsync(Bound)).Status);
    }

    [Fact]
    public async Task Terminate_DeadlinePassesBeforeLastReport_FailsAndKeepsPreviousLatest()
    {
        var (rank0, rank1) = AttachTwo();
        var periodic = await CommitPeriodicAsync(rank0, rank1, step: 50);
        _time.Advance(TimeSpan.FromSeconds(1));
        var id = _coordinator.Terminate(TerminationSource.Signal).CheckpointId!;
        Assert.True(rank0.Commands.Reader.TryRead(out var command));
        _coordinator.Report(rank0.Id, id, 60, Dump(command, rank: 0, seed: 3), NoMetadata);

        _time.Advance(Grace - Margin);
        var outcome = await _coordinator.Terminated.WaitAsync(Bound);

        Assert.NotNull(outcome);
        Assert.Equal(id, outcome.CheckpointId);
        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Equal(FlushFailureCause.DeadlineExceeded, outcome.FailureCause);
        Assert.Contains("rank(s) 1 reported", outcome.Error, StringComparison.Ordinal);
        Assert.Equal(periodic, _store.ReadLatestId());
        Assert.Equal(periodic, _store.FindLatestValid(verifyHashes: true, 64 * 1024, null, CancellationToken.None)?.Id);
        Assert.False(Directory.Exists(_store.Layout.StepDirectory(60)));

        var late = Assert.Throws<FlushRequestException>(
            () => _coordinator.Report(rank1.Id, id, 60, Dump(command, rank: 1, seed: 4), NoMetadata));
        Assert.Equal(FlushRequestError.FailedPrecondition, late.Error);
        Assert.Equal(periodic, _store.ReadLatestId());

        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_deadline_misses_total"));
        Assert.Equal(1, samples.Value("checkpoint_flush_failures_total", ("cause", "deadline_exceeded")));
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "preemption"), ("outcome", "failed")));
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "periodic"), ("outcome", "committed")));
    }

    [Fact]
    public void Terminate_JustBeforeDeadline_StillCollecting()
    {
        var (rank0, _) = AttachTwo();
        _coordinator.Terminate(TerminationSource.Signal);
        Assert.True(rank0.Commands.Reader.TryRead(out _));

        _time.Advance(Grace - Margin - TimeSpan.FromMilliseconds(1));

        Assert.False(_coordinator.Terminated.IsCompleted);
    }

    [Fact]
    public async Task Detach_ExpectedRankBeforeReporting_FailsTrainerLost()
    {
        var (rank0, rank1) = AttachTwo();
        var id = _coordinator.Terminate(TerminationSource.Signal).CheckpointId!;
        Assert.True(rank0.Commands.Reader.TryRead(out var command));
        _coordinator.Report(rank0.Id, id, 9, Dump(command, rank: 0, seed: 1), NoMetadata);

        _coordinator.Detach(rank1.Id);

        var outcome = await _coordinator.Terminated.WaitAsync(Bound);
        Assert.NotNull(outcome);
        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Equal(FlushFailureCause.TrainerLost, outcome.FailureCause);
        Assert.Contains("rank 1", outcome.Error, StringComparison.Ordinal);
        // The stream's command queue is closed: once the pending dump command is read, it completes.
        Assert.True(rank1.Commands.Reader.TryRead(out _));
        await rank1.Commands.Reader.Completion.WaitAsync(Bound);
        Assert.Equal([0], _coordinator.Trainers().Select(t => t.Rank));
        Assert.Null(_store.ReadLatestId());
        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flush_failures_total", ("cause", "trainer_lost")));
        Assert.Equal(1, samples.Value("checkpoint_trainers_attached"));
    }

    [Fact]
    public void Attach_SameRankTwice_ThrowsAlreadyExists()
    {
        AttachTwo();

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.Attach(1, "again"));

        Assert.Equal(FlushRequestError.AlreadyExists, e.Error);
    }

    [Fact]
    public async Task BeginCheckpoint_BothRanksSameStep_ShareOneCheckpoint()
    {
        var (rank0, rank1) = AttachTwo();

        var command0 = _coordinator.BeginCheckpoint(rank0.Id, 10, CheckpointReason.Periodic);
        var command1 = _coordinator.BeginCheckpoint(rank1.Id, 10, CheckpointReason.Periodic);

        Assert.Equal(command0, command1);
        Assert.Equal(CheckpointReason.Periodic, command0.Reason);
        Assert.Null(command0.Deadline);
        _coordinator.Report(rank0.Id, command0.CheckpointId, 10, Dump(command0, rank: 0, seed: 1), NoMetadata);
        _coordinator.Report(rank1.Id, command1.CheckpointId, 10, Dump(command1, rank: 1, seed: 2), NoMetadata);
        var outcome = await _coordinator.WaitAsync(command0.CheckpointId, CancellationToken.None).WaitAsync(Bound);
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        Assert.Equal(10, outcome.Step);
        Assert.True(File.Exists(Path.Combine(_store.Layout.StepDirectory(10), "manifest.json")));
        Assert.Equal(command0.CheckpointId, _coordinator.LastCommittedId);
    }

    [Fact]
    public async Task BeginCheckpoint_LaterStep_SupersedesCollectingOlder()
    {
        var (rank0, rank1) = AttachTwo();
        var older = _coordinator.BeginCheckpoint(rank0.Id, 10, CheckpointReason.Periodic);
        _coordinator.Report(rank0.Id, older.CheckpointId, 10, Dump(older, rank: 0, seed: 1), NoMetadata);
        var olderOutcome = _coordinator.WaitAsync(older.CheckpointId, CancellationToken.None);

        var newer = _coordinator.BeginCheckpoint(rank0.Id, 20, CheckpointReason.Periodic);

        Assert.NotEqual(older.CheckpointId, newer.CheckpointId);
        var outcome = await olderOutcome.WaitAsync(Bound);
        Assert.Equal(CheckpointStatus.Superseded, outcome.Status);
        Assert.False(Directory.Exists(older.StagingDirectory));
        var late = Assert.Throws<FlushRequestException>(
            () => _coordinator.Report(rank1.Id, older.CheckpointId, 10, Dump(older, rank: 1, seed: 2), NoMetadata));
        Assert.Equal(FlushRequestError.FailedPrecondition, late.Error);
        Assert.Equal(newer, _coordinator.BeginCheckpoint(rank1.Id, 20, CheckpointReason.Periodic));
        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "periodic"), ("outcome", "superseded")));
    }

    [Fact]
    public void BeginCheckpoint_OlderStepWhileNewerCollecting_ThrowsFailedPrecondition()
    {
        var (rank0, rank1) = AttachTwo();
        _coordinator.BeginCheckpoint(rank0.Id, 20, CheckpointReason.Periodic);

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.BeginCheckpoint(rank1.Id, 10, CheckpointReason.Periodic));

        Assert.Equal(FlushRequestError.FailedPrecondition, e.Error);
    }

    [Fact]
    public void BeginCheckpoint_PreemptionReason_ThrowsInvalidArgument()
    {
        var (rank0, _) = AttachTwo();

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.BeginCheckpoint(rank0.Id, 10, CheckpointReason.Preemption));

        Assert.Equal(FlushRequestError.InvalidArgument, e.Error);
    }

    [Fact]
    public void BeginCheckpoint_DuringTermination_ThrowsFailedPrecondition()
    {
        var (rank0, _) = AttachTwo();
        _coordinator.Terminate(TerminationSource.TrainerNotice);

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.BeginCheckpoint(rank0.Id, 10, CheckpointReason.Periodic));

        Assert.Equal(FlushRequestError.FailedPrecondition, e.Error);
    }

    [Fact]
    public async Task Terminate_WhilePeriodicCollecting_SupersedesIt()
    {
        var (rank0, _) = AttachTwo();
        var periodic = _coordinator.BeginCheckpoint(rank0.Id, 10, CheckpointReason.Periodic);
        var periodicOutcome = _coordinator.WaitAsync(periodic.CheckpointId, CancellationToken.None);

        var ticket = _coordinator.Terminate(TerminationSource.Signal);

        Assert.NotEqual(periodic.CheckpointId, ticket.CheckpointId);
        Assert.Equal(CheckpointStatus.Superseded, (await periodicOutcome.WaitAsync(Bound)).Status);
    }

    [Fact]
    public async Task Terminate_NoTrainersAttached_TerminatedCompletesWithNull()
    {
        var ticket = _coordinator.Terminate(TerminationSource.Signal);

        Assert.Null(ticket.CheckpointId);
        Assert.Null(ticket.Deadline);
        Assert.Null(await _coordinator.Terminated.WaitAsync(Bound));
        Assert.Equal(new TerminationTicket(null, null), _coordinator.Terminate(TerminationSource.PreStopHook));
        Assert.True(_coordinator.IsTerminating);
    }

    [Fact]
    public async Task Terminate_StagingCannotBeCreated_FailsTheFlushWithItsCauseInsteadOfThrowing()
    {
        // Terminate runs on the SIGTERM path: an exception there kills the sidecar with no record.
        var (rank0, _) = AttachTwo();
        MakeStagingUnusable();

        var ticket = _coordinator.Terminate(TerminationSource.Signal);

        var outcome = await _coordinator.Terminated.WaitAsync(Bound);
        Assert.NotNull(outcome);
        Assert.Equal(ticket.CheckpointId, outcome.CheckpointId);
        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Equal(FlushFailureCause.StorageError, outcome.FailureCause);
        Assert.Contains($"could not create the staging directory '{Path.Combine(_temp.Combine("staging"), ticket.CheckpointId!)}'", outcome.Error, StringComparison.Ordinal);
        Assert.False(rank0.Commands.Reader.TryRead(out _));
        var report = await _reporter.FirstEnded.WaitAsync(Bound);
        Assert.Equal(CheckpointStatus.Failed, report.Outcome.Status);
        var samples = await MetricsText.CollectAsync(_registry);
        Assert.Equal(1, samples.Value("checkpoint_flush_failures_total", ("cause", "storage_error")));
        Assert.Equal(1, samples.Value("checkpoint_flushes_total", ("reason", "preemption"), ("outcome", "failed")));
        Assert.Equal(ticket, _coordinator.Terminate(TerminationSource.PreStopHook));
    }

    [Fact]
    public void BeginCheckpoint_StagingCannotBeCreated_ThrowsFailedPreconditionNamingTheDirectory()
    {
        var (rank0, _) = AttachTwo();
        MakeStagingUnusable();

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.BeginCheckpoint(rank0.Id, 10, CheckpointReason.Periodic));

        Assert.Equal(FlushRequestError.FailedPrecondition, e.Error);
        Assert.Contains($"could not create the staging directory '{_temp.Combine("staging")}/", e.Message, StringComparison.Ordinal);
        Assert.False(_coordinator.IsTerminating);
    }

    [Fact]
    public async Task Finish_StagingHoldsNamesThatAreNotUtf8_RemovesIt()
    {
        var (rank0, rank1) = AttachTwo();
        var command = _coordinator.BeginCheckpoint(rank0.Id, 10, CheckpointReason.Periodic);
        _coordinator.BeginCheckpoint(rank1.Id, 10, CheckpointReason.Periodic);
        var files = Dump(command, rank: 0, seed: 1);
        await TempDirectory.WriteFilesNamedInLatin1Async(Path.Combine(command.StagingDirectory, "rank0"));
        _coordinator.Report(rank0.Id, command.CheckpointId, 10, files, NoMetadata);

        _coordinator.Detach(rank1.Id);

        Assert.Equal(CheckpointStatus.Failed, (await _coordinator.WaitAsync(command.CheckpointId, CancellationToken.None).WaitAsync(Bound)).Status);
        Assert.False(Path.Exists(command.StagingDirectory));
    }

    [Fact]
    public async Task Report_PeriodicsBeyondKeep_RetiresOldest()
    {
        var (rank0, rank1) = AttachTwo();
        var ids = new List<string>();
        for (var step = 1; step <= 4; step++)
        {
            ids.Add(await CommitPeriodicAsync(rank0, rank1, step));
            _time.Advance(TimeSpan.FromSeconds(1));
        }

        await _coordinator.HousekeepingDone.WaitAsync(Bound);
        Assert.Equal(ids[1..], _store.Layout.StepCandidates().Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.Equal(ids[^1], _store.ReadLatestId());
    }

    [Fact]
    public void BeginCheckpoint_TrainerIdFromAnotherProcess_PermissionDenied()
    {
        var trainer = _coordinator.Attach(0, "rank 0", new TrainerPeer(ProcessId: 100, "connection-1"));

        var e = Assert.Throws<FlushRequestException>(() =>
            _coordinator.BeginCheckpoint(trainer.Id, 10, CheckpointReason.Periodic, new TrainerPeer(ProcessId: 200, "connection-2")));

        Assert.Equal(FlushRequestError.PermissionDenied, e.Error);
        Assert.Contains("attached by another process", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Report_TrainerIdFromAnotherProcess_PermissionDeniedAndTheRankStillExpected()
    {
        var trainer = _coordinator.Attach(0, "rank 0", new TrainerPeer(ProcessId: 100, "connection-1"));
        var dump = _coordinator.BeginCheckpoint(trainer.Id, 10, CheckpointReason.Periodic, new TrainerPeer(ProcessId: 100, "connection-1"));
        var files = Dump(dump, rank: 0, seed: 1);

        var e = Assert.Throws<FlushRequestException>(() =>
            _coordinator.Report(trainer.Id, dump.CheckpointId, 10, files, NoMetadata, new TrainerPeer(ProcessId: 200, "connection-2")));

        Assert.Equal(FlushRequestError.PermissionDenied, e.Error);
        Assert.Equal((1, 1), _coordinator.Report(trainer.Id, dump.CheckpointId, 10, files, NoMetadata, new TrainerPeer(ProcessId: 100, "connection-1")));
    }

    [Fact]
    public void BeginCheckpoint_SameProcessOnAnotherConnection_Accepted()
    {
        var trainer = _coordinator.Attach(0, "rank 0", new TrainerPeer(ProcessId: 100, "connection-1"));

        var dump = _coordinator.BeginCheckpoint(trainer.Id, 10, CheckpointReason.Periodic, new TrainerPeer(ProcessId: 100, "connection-2"));

        Assert.Equal(CheckpointReason.Periodic, dump.Reason);
    }

    [Fact]
    public void BeginCheckpoint_PidsNotVisible_OnlyTheAttachingConnectionAccepted()
    {
        // Separate pid namespaces (containers of a pod): the kernel reports no pid, so the connection stands for the process.
        var trainer = _coordinator.Attach(0, "rank 0", new TrainerPeer(ProcessId: null, "connection-1"));

        var e = Assert.Throws<FlushRequestException>(() =>
            _coordinator.BeginCheckpoint(trainer.Id, 10, CheckpointReason.Periodic, new TrainerPeer(ProcessId: null, "connection-2")));
        var dump = _coordinator.BeginCheckpoint(trainer.Id, 10, CheckpointReason.Periodic, new TrainerPeer(ProcessId: null, "connection-1"));

        Assert.Equal(FlushRequestError.PermissionDenied, e.Error);
        Assert.Equal(CheckpointReason.Periodic, dump.Reason);
    }

    [Fact]
    public void RefuseImpersonation_AnotherProcessesTrainer_PermissionDenied_UnknownIdPasses()
    {
        var trainer = _coordinator.Attach(0, "rank 0", new TrainerPeer(ProcessId: 100, "connection-1"));
        var stranger = new TrainerPeer(ProcessId: 200, "connection-2");

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.RefuseImpersonation(trainer.Id, stranger));
        _coordinator.RefuseImpersonation("trainer-that-left-long-ago", stranger);

        Assert.Equal(FlushRequestError.PermissionDenied, e.Error);
    }

    /// <summary>The staging volume gone from under the sidecar, a regular file where it was.</summary>
    private void MakeStagingUnusable()
    {
        var staging = _temp.Combine("staging");
        Directory.Delete(staging);
        File.WriteAllText(staging, "not a directory");
    }

    [Fact]
    public void Attach_WorldsThatDisagree_AreRefusedWithWhatWasWrong()
    {
        _coordinator.Attach(0, "rank 0", worldSize: 4, worldId: "run1");

        var other = Assert.Throws<FlushRequestException>(() => _coordinator.Attach(1, "rank 1", worldSize: 4, worldId: "run2"));
        var outside = Assert.Throws<FlushRequestException>(() => _coordinator.Attach(4, "rank 4", worldSize: 4, worldId: "run1"));
        var badId = Assert.Throws<FlushRequestException>(() => _coordinator.Attach(1, "rank 1", worldSize: 4, worldId: "Run-1"));
        var idWithoutSize = Assert.Throws<FlushRequestException>(() => _coordinator.Attach(1, "rank 1", worldId: "run1"));

        Assert.Equal(FlushRequestError.FailedPrecondition, other.Error);
        Assert.Contains("run1", other.Message, StringComparison.Ordinal);
        Assert.Equal(FlushRequestError.InvalidArgument, outside.Error);
        Assert.Contains("outside a world of 4", outside.Message, StringComparison.Ordinal);
        Assert.Equal(FlushRequestError.InvalidArgument, badId.Error);
        Assert.Equal(FlushRequestError.InvalidArgument, idWithoutSize.Error);
        Assert.Equal(1, _coordinator.Attach(1, "rank 1", worldSize: 4, worldId: "run1").Rank);
    }

    [Fact]
    public void BeginJobPreemption_WithoutDeadline_IsRefused()
    {
        var rank0 = _coordinator.Attach(0, "rank 0", worldSize: 2, worldId: "run1");

        var e = Assert.Throws<FlushRequestException>(() => _coordinator.BeginCheckpoint(rank0.Id, 5, CheckpointReason.Preemption));

        Assert.Equal(FlushRequestError.InvalidArgument, e.Error);
        Assert.Contains("deadline", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BeginJobPreemption_PodNotPreempted_RanksShareAPreemptionCheckpointWithTheAnnouncedDeadline()
    {
        var rank0 = _coordinator.Attach(0, "rank 0", worldSize: 2, worldId: "run1");
        var rank1 = _coordinator.Attach(1, "rank 1", worldSize: 2, worldId: "run1");
        var periodic = _coordinator.BeginCheckpoint(rank0.Id, 4, CheckpointReason.Periodic);
        var deadline = _time.GetUtcNow() + TimeSpan.FromSeconds(20);

        var command0 = _coordinator.BeginCheckpoint(rank0.Id, 5, CheckpointReason.Preemption, deadline: deadline);
        var command1 = _coordinator.BeginCheckpoint(rank1.Id, 5, CheckpointReason.Preemption, deadline: deadline + TimeSpan.FromSeconds(5));

        Assert.Equal(command0, command1);
        Assert.Equal(CheckpointReason.Preemption, command0.Reason);
        Assert.Equal(deadline, command0.Deadline);
        Assert.False(_coordinator.IsTerminating);
        Assert.Equal(CheckpointStatus.Superseded, (await _coordinator.WaitAsync(periodic.CheckpointId, CancellationToken.None).WaitAsync(Bound)).Status);
        var refused = Assert.Throws<FlushRequestException>(() => _coordinator.BeginCheckpoint(rank0.Id, 6, CheckpointReason.Periodic));
        Assert.Equal(FlushRequestError.FailedPrecondition, refused.Error);
        var otherStep = Assert.Throws<FlushRequestException>(
            () => _coordinator.BeginCheckpoint(rank1.Id, 6, CheckpointReason.Preemption, deadline: deadline));
        Assert.Contains("step 5", otherStep.Message, StringComparison.Ordinal);

        _coordinator.Report(rank0.Id, command0.CheckpointId, 5, Dump(command0, rank: 0, seed: 1), NoMetadata);
        _coordinator.Report(rank1.Id, command0.CheckpointId, 5, Dump(command0, rank: 1, seed: 2), NoMetadata);
        var outcome = await _coordinator.WaitAsync(command0.CheckpointId, CancellationToken.None).WaitAsync(Bound);

        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        Assert.Equal(5, outcome.Step);
        Assert.False(_coordinator.Terminated.IsCompleted);
        Assert.Equal("step-000000005", _store.FindLatestValid(verifyHashes: true, 64 * 1024, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public void BeginJobPreemption_ThenThisPodIsPreempted_TheSignalJoinsItWithTheEarlierDeadline()
    {
        var rank0 = _coordinator.Attach(0, "rank 0", worldSize: 2, worldId: "run1");
        var command = _coordinator.BeginCheckpoint(rank0.Id, 5, CheckpointReason.Preemption, deadline: _time.GetUtcNow() + TimeSpan.FromMinutes(5));

        var ticket = _coordinator.Terminate(TerminationSource.Signal);

        Assert.Equal(command.CheckpointId, ticket.CheckpointId);
        Assert.Equal(_time.GetUtcNow() + Grace - Margin, ticket.Deadline);
        Assert.True(_coordinator.IsTerminating);
        Assert.False(rank0.Commands.Reader.TryRead(out _));
    }

    [Fact]
    public void PodPreempted_ThenRanksAskForTheJobWideCheckpoint_TheyGetThisPodsOwn()
    {
        var rank0 = _coordinator.Attach(0, "rank 0", worldSize: 2, worldId: "run1");
        var ticket = _coordinator.Terminate(TerminationSource.Signal);

        var command = _coordinator.BeginCheckpoint(rank0.Id, 5, CheckpointReason.Preemption, deadline: _time.GetUtcNow() + TimeSpan.FromMinutes(5));

        Assert.Equal(ticket.CheckpointId, command.CheckpointId);
        Assert.Equal(ticket.Deadline, command.Deadline);
    }

    [Fact]
    public async Task JobWide_OtherPodSealsAndDies_ThisPodLeavesItTheManifestAWhile_ThenTakesOver()
    {
        var rank0 = _coordinator.Attach(0, "rank 0", worldSize: 2, worldId: "run1");
        var command = _coordinator.BeginCheckpoint(rank0.Id, 5, CheckpointReason.Preemption, deadline: _time.GetUtcNow() + TimeSpan.FromSeconds(20));
        // Each poll logs once its next look is scheduled, so the test moves the clock only when it counts.
        var polled = _pipelineLogger.WhenLogged(248);
        _coordinator.Report(rank0.Id, command.CheckpointId, 5, Dump(command, rank: 0, seed: 1), NoMetadata);
        await polled.WaitAsync(Bound);

        // The other pod seals rank 1 and dies before writing the job manifest.
        await SealAsOtherPodAsync(step: 5, rank: 1, new JobWorld(2, "run1"));
        var covered = _pipelineLogger.WhenLogged(247);
        polled = _pipelineLogger.WhenLogged(248);
        _time.Advance(FlushPipeline.PublishPollInterval);
        await Task.WhenAll(covered, polled).WaitAsync(Bound);
        Assert.False(File.Exists(Path.Combine(_store.Layout.StepDirectory(5), "manifest.json")),
            "a pod that finds the world covered by a poll leaves the manifest to the pod that sealed last, for a while");

        _time.Advance(FlushPipeline.PublishTakeoverDelay);
        var outcome = await _coordinator.WaitAsync(command.CheckpointId, CancellationToken.None).WaitAsync(Bound);

        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        Assert.Equal(FlushPipeline.PublishPollInterval + FlushPipeline.PublishTakeoverDelay, outcome.Timings!.CommitWait);
        var latest = _store.FindLatestValid(verifyHashes: true, 64 * 1024, null, CancellationToken.None);
        Assert.Equal(2, latest?.WorldSize);
        Assert.Equal(outcome.Directory, latest?.DirectoryOf(0));
    }

    [Fact]
    public async Task JobWide_OtherPodNeverSeals_FailsAtTheDeadlineNamingTheMissingRank()
    {
        var rank0 = _coordinator.Attach(0, "rank 0", worldSize: 3, worldId: "run1");
        var command = _coordinator.BeginCheckpoint(rank0.Id, 5, CheckpointReason.Preemption, deadline: _time.GetUtcNow() + TimeSpan.FromSeconds(20));
        var waiting = _pipelineLogger.WhenLogged(245);
        _coordinator.Report(rank0.Id, command.CheckpointId, 5, Dump(command, rank: 0, seed: 1), NoMetadata);
        await waiting.WaitAsync(Bound);
        // A shard of rank 1 from an earlier run of the job: not part of this world.
        await SealAsOtherPodAsync(step: 5, rank: 1, new JobWorld(3, "run0"));

        _time.Advance(TimeSpan.FromSeconds(20));
        var outcome = await _coordinator.WaitAsync(command.CheckpointId, CancellationToken.None).WaitAsync(Bound);

        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Equal(FlushFailureCause.JobIncomplete, outcome.FailureCause);
        Assert.Equal([1, 2], outcome.MissingRanks);
        Assert.Contains("rank(s) 1-2", outcome.Error, StringComparison.Ordinal);
        Assert.Null(_store.FindLatestValid(verifyHashes: true, 64 * 1024, null, CancellationToken.None));
    }

    /// <summary>What another pod's sidecar does for its rank: write and seal its shard on the same storage.</summary>
    private async Task SealAsOtherPodAsync(long step, int rank, JobWorld world)
    {
        var other = new SharedDirectoryTarget(_store.Layout, new CheckpointCopier(1, 64 * 1024, TimeProvider.System), "pod-b", NullLogger<SharedDirectoryTarget>.Instance);
        var staging = _temp.CreateDirectory("pod-b-staging");
        var file = $"rank-{rank}/model.bin";
        using var root = new StagingRoot(staging, NullLogger<StagingRoot>.Instance);
        using var directory = root.CreateCheckpointDirectory(TempDirectory.StagingId);
        TempDirectory.WriteFile(directory.Path, file, TempDirectory.RandomBytes(1000, rank));
        var staged = StagingValidator.Validate(directory, [file], new HashSet<string>(StringComparer.Ordinal));
        var written = await other.WriteAsync(
            new ShardRequest(step, world, "preemption", staged,
                [new ManifestRank(rank, step, new Dictionary<string, string>())]),
            null, CancellationToken.None);
        other.Seal(written, new ManifestTimings(30, 0, 0, 0, 0), _time.GetUtcNow());
    }

    private (AttachedTrainer Rank0, AttachedTrainer Rank1) AttachTwo() =>
        (_coordinator.Attach(0, "rank 0"), _coordinator.Attach(1, "rank 1"));

    /// <summary>What a trainer does on a dump command: writes its files into staging. A copy is kept to compare with.</summary>
    private List<string> Dump(DumpCommand command, int rank, int seed)
    {
        var files = new List<string> { $"rank{rank}/model.bin", $"rank{rank}/optimizer/state.bin" };
        for (var i = 0; i < files.Count; i++)
        {
            var bytes = TempDirectory.RandomBytes((70 * 1024 * (i + 1)) + seed, seed * 10 + i);
            TempDirectory.WriteFile(command.StagingDirectory, files[i], bytes);
            TempDirectory.WriteFile(_temp.Combine("expected"), files[i], bytes);
        }

        return files;
    }

    private async Task<string> CommitPeriodicAsync(AttachedTrainer rank0, AttachedTrainer rank1, long step)
    {
        var command = _coordinator.BeginCheckpoint(rank0.Id, step, CheckpointReason.Periodic);
        Assert.Equal(command, _coordinator.BeginCheckpoint(rank1.Id, step, CheckpointReason.Periodic));
        _coordinator.Report(rank0.Id, command.CheckpointId, step, Dump(command, rank: 0, seed: (int)step), NoMetadata);
        _coordinator.Report(rank1.Id, command.CheckpointId, step, Dump(command, rank: 1, seed: (int)step + 1000), NoMetadata);
        var outcome = await _coordinator.WaitAsync(command.CheckpointId, CancellationToken.None).WaitAsync(Bound);
        Assert.Equal(CheckpointStatus.Committed, outcome.Status);
        return CheckpointLayout.StepName(step);
    }

    [Fact]
    public async Task Terminate_AfterEveryTrainerDetached_IsTheEndOfTrainingNotAPreemption()
    {
        var trainer = _coordinator.Attach(0, "rank 0");
        _coordinator.Detach(trainer.Id);
        var trainingEnded = _logger.WhenLogged(249);

        var ticket = _coordinator.Terminate(TerminationSource.Signal);

        Assert.Null(ticket.CheckpointId);
        Assert.Null(await _coordinator.Terminated.WaitAsync(Bound));
        Assert.True(_coordinator.EndedAsShutdown);
        Assert.True(trainingEnded.IsCompleted);
        Assert.DoesNotContain(await MetricsText.CollectAsync(_registry), s => s.Name == "checkpoint_preemptions_total");
    }

    [Fact]
    public async Task Terminate_NoTrainerEverAttached_CountsAPreemption()
    {
        _coordinator.Terminate(TerminationSource.Signal);

        Assert.Null(await _coordinator.Terminated.WaitAsync(Bound));
        Assert.False(_coordinator.EndedAsShutdown);
        Assert.Equal(1, (await MetricsText.CollectAsync(_registry)).Single(s => s.Name == "checkpoint_preemptions_total" && s.Labels["cause"] == "Signal").Value);
    }

    [Fact]
    public async Task Terminate_AfterTrainersDetached_WithDisruptionTarget_CountsAPreemption()
    {
        var trainer = _coordinator.Attach(0, "rank 0");
        _coordinator.Detach(trainer.Id);

        _coordinator.Terminate(TerminationSource.PodWatch, disruptionReason: "PreemptionByScheduler");

        Assert.False(_coordinator.EndedAsShutdown);
        Assert.Equal(1, (await MetricsText.CollectAsync(_registry)).Single(s => s.Name == "checkpoint_preemptions_total" && s.Labels["cause"] == "PreemptionByScheduler").Value);
    }

    /// <summary>Lets a test look at the world at the moment the coordinator logs an event.</summary>
    private sealed class ProbeLogger<T> : ILogger<T>
    {
        private readonly List<(int Id, TaskCompletionSource Logged)> _awaited = [];

        public Action<EventId>? OnLog { get; set; }

        /// <summary>Completes when an event of this id is logged (from now on).</summary>
        public Task WhenLogged(int eventId)
        {
            var logged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_awaited)
            {
                _awaited.Add((eventId, logged));
            }

            return logged.Task;
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            OnLog?.Invoke(eventId);
            lock (_awaited)
            {
                foreach (var (_, logged) in _awaited.Where(a => a.Id == eventId.Id))
                {
                    logged.TrySetResult();
                }
            }
        }
    }

    /// <summary>Keeps what the coordinator reports, and lets a test await the first flush report.</summary>
    private sealed class RecordingReporter : IFlushReporter
    {
        private readonly TaskCompletionSource<FlushReport> _firstEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public List<PreemptionStarted> Started { get; } = [];

        public Task<FlushReport> FirstEnded => _firstEnded.Task;

        public Task PreemptionStartedAsync(PreemptionStarted started, CancellationToken cancellationToken)
        {
            lock (Started)
            {
                Started.Add(started);
            }

            return Task.CompletedTask;
        }

        public Task FlushEndedAsync(FlushReport report, CancellationToken cancellationToken)
        {
            _firstEnded.TrySetResult(report);
            return Task.CompletedTask;
        }
    }
}
