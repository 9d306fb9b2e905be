using Checkpoint.IntegrationTests.Infrastructure;
using Checkpoint.TrainerSdk;
using Checkpoint.TrainerSdk.Internal;
using Google.Protobuf.WellKnownTypes;
using Proto = Checkpoint.Protos.V1;

namespace Checkpoint.IntegrationTests;

/// <summary>
/// The C# SDK's side of job-wide (multi-pod) checkpoints: the world a trainer gives (options, environment, Attach), the
/// call that joins a job-wide preemption checkpoint, and the job-level facts in answers. What goes on the wire is checked
/// against <see cref="FakeSidecar"/>: the real sidecar neither logs the world nor (yet) accepts a job-wide preemption.
/// </summary>
public sealed class JobWideSdkTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static readonly Func<string, string?> NoEnvironment = _ => null;

    // Whole seconds plus 100 ns ticks: the deadline must cross the wire to the tick.
    private static readonly DateTimeOffset Deadline = new DateTimeOffset(2026, 11, 30, 14, 5, 9, TimeSpan.Zero).AddTicks(1_234_567);

    [Fact]
    public void Options_FromLauncherEnvironment_ReadRankWorldSizeAndWorldId()
    {
        var environment = new Dictionary<string, string>
        {
            ["RANK"] = "13",
            ["WORLD_SIZE"] = "16",
            ["CHECKPOINT_WORLD_ID"] = "run0042",
        };

        var options = new CheckpointClientOptions(name => environment.GetValueOrDefault(name));

        Assert.Equal(13, options.Rank);
        Assert.Equal(16, options.WorldSize);
        Assert.Equal("run0042", options.WorldId);
        options.Validate();
    }

    [Fact]
    public void Options_NoWorldInEnvironment_SinglePodWithoutRunIdentity()
    {
        var options = new CheckpointClientOptions(NoEnvironment);

        Assert.Equal(0, options.WorldSize);
        Assert.Equal(string.Empty, options.WorldId);
        options.Validate();
    }

    [Theory]
    [InlineData("eight")]
    [InlineData("-4")]
    [InlineData("4.0")]
    public void Options_MalformedWorldSizeVariable_ThrowsNamingVariableAndValue(string value)
    {
        var e = Assert.Throws<CheckpointException>(() => new CheckpointClientOptions(name => name == "WORLD_SIZE" ? value : null));

        Assert.Equal(CheckpointErrorCode.InvalidArgument, e.StatusCode);
        Assert.Contains($"The WORLD_SIZE environment variable is '{value}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("CheckpointClientOptions.WorldSize", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(4, 4)]
    [InlineData(9, 4)]
    [InlineData(1, 1)]
    public void Validate_RankNotBelowWorldSize_ThrowsNamingBoth(int rank, int worldSize)
    {
        var options = new CheckpointClientOptions(NoEnvironment) { Rank = rank, WorldSize = worldSize };

        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);

        Assert.Equal(nameof(CheckpointClientOptions.Rank), e.ParamName);
        Assert.Contains($"Rank {rank} is not in a world of {worldSize} rank", e.Message, StringComparison.Ordinal);
        Assert.Contains($"(0..{worldSize - 1})", e.Message, StringComparison.Ordinal);
        Assert.Contains("WORLD_SIZE", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NegativeWorldSize_Throws()
    {
        var options = new CheckpointClientOptions(NoEnvironment) { WorldSize = -1 };

        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);

        Assert.Equal(nameof(CheckpointClientOptions.WorldSize), e.ParamName);
    }

    [Theory]
    [InlineData("Run1")]
    [InlineData("run-1")]
    [InlineData("run_1")]
    [InlineData("run 1")]
    [InlineData("rün1")]
    [InlineData("123456789012345678901234567890123")]
    public void Validate_WorldIdOutsideAlphabetOrTooLong_ThrowsSayingWhatIsAllowed(string worldId)
    {
        var options = new CheckpointClientOptions(NoEnvironment) { WorldSize = 2, WorldId = worldId };

        var e = Assert.Throws<ArgumentException>(options.Validate);

        Assert.Equal(nameof(CheckpointClientOptions.WorldId), e.ParamName);
        Assert.Contains($"The world id '{worldId}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("up to 32 characters of a-z and 0-9", e.Message, StringComparison.Ordinal);
        Assert.Contains("CHECKPOINT_WORLD_ID", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("abcdefghijklmnopqrstuvwxyz012345")]
    public void Validate_WorldIdOfAllowedCharacters_Passes(string worldId)
    {
        var options = new CheckpointClientOptions(NoEnvironment) { WorldSize = 2, WorldId = worldId };

        options.Validate();
    }

    [Fact]
    public void NewWorldId_IsAValidWorldIdAndFreshEachTime()
    {
        string first = CheckpointClientOptions.NewWorldId();
        string second = CheckpointClientOptions.NewWorldId();

        new CheckpointClientOptions(NoEnvironment) { WorldId = first }.Validate();
        Assert.Equal(CheckpointClientOptions.MaxWorldIdLength, first.Length);
        Assert.NotEqual(first, second);
    }

    [Fact]
    public async Task ConnectAsync_BadWorldId_ThrowsBeforeReachingForTheSidecar()
    {
        using var dirs = new TestDirectories();
        var options = new CheckpointClientOptions(NoEnvironment) { SocketPath = dirs.SocketPath, WorldId = "Job-7", HandleTermination = false };

        // No sidecar listens there: an option error must not read as "sidecar unreachable".
        var e = await Assert.ThrowsAsync<ArgumentException>(() => CheckpointClient.ConnectAsync(options));

        Assert.Equal(nameof(CheckpointClientOptions.WorldId), e.ParamName);
    }

    [Fact]
    public async Task Attach_WorldGiven_SendsRankWorldSizeAndWorldId()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);

        await using var client = await ConnectAsync(sidecar, rank: 13, worldSize: 16, worldId: "run0042");

        var attach = await sidecar.Attaches.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        Assert.Equal(13, attach.Rank);
        Assert.Equal(16, attach.WorldSize);
        Assert.Equal("run0042", attach.WorldId);
        Assert.Equal("job-wide test rank 13", attach.Description);
        Assert.Equal((13, 16, "run0042"), (client.Rank, client.WorldSize, client.WorldId));
    }

    [Fact]
    public async Task Attach_NoWorld_SendsZeroWorldSizeAndEmptyWorldId()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);

        await using var client = await ConnectAsync(sidecar, rank: 0);

        var attach = await sidecar.Attaches.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        Assert.Equal(0, attach.WorldSize);
        Assert.Equal(string.Empty, attach.WorldId);
    }

    [Fact]
    public async Task Reattach_AfterSidecarEndsStream_SendsTheSameWorldAgain()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);
        await using var client = await ConnectAsync(sidecar, rank: 3, worldSize: 8, worldId: "abc123");
        var first = await sidecar.Attaches.Reader.ReadAsync().AsTask().WaitAsync(Bound);

        sidecar.EndAttachments();
        var second = await sidecar.Attaches.Reader.ReadAsync().AsTask().WaitAsync(Bound);

        Assert.Equal(first, second);
        Assert.Equal((3, 8, "abc123"), (second.Rank, second.WorldSize, second.WorldId));

        // The client was detached before it reattached, so this waits for the new attachment's confirmation.
        await client.WaitForAttachmentAsync().WaitAsync(Bound);
        Assert.Equal("fake-trainer-2", client.TrainerId);
    }

    [Fact]
    public async Task BeginJobPreemptionCheckpoint_SendsPreemptionWithStepAndDeadline_AndReturnsThePreemptionDump()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);
        await using var client = await ConnectAsync(sidecar, rank: 5, worldSize: 16, worldId: "run0042");
        Assert.False(client.TerminationRequested);

        var dump = await client.BeginJobPreemptionCheckpointAsync(1234, Deadline);

        var request = await sidecar.Begins.Reader.ReadAsync().AsTask().WaitAsync(Bound);
        Assert.Equal(client.TrainerId, request.TrainerId);
        Assert.Equal(1234, request.Step);
        Assert.Equal(Proto.CheckpointReason.Preemption, request.Reason);
        Assert.Equal(Deadline, request.Deadline.ToDateTimeOffset());

        Assert.Equal(new DumpRequest("ckpt-1", CheckpointReason.Preemption, Deadline, "/staging/ckpt-1"), dump);
        Assert.Equal(Path.Combine("/staging/ckpt-1", "rank-5"), dump.RankDirectory(client.Rank));
        Assert.True(client.TerminationRequested, "a rank that joined a job-wide preemption checkpoint is terminating");
    }

    [Fact]
    public async Task BeginJobPreemptionCheckpoint_NoDeadline_ThrowsWithoutCallingTheSidecar()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);
        await using var client = await ConnectAsync(sidecar, rank: 0, worldSize: 2);

        var e = await Assert.ThrowsAsync<ArgumentException>(() => client.BeginJobPreemptionCheckpointAsync(10, default));

        Assert.Equal("deadline", e.ParamName);
        Assert.False(sidecar.Begins.Reader.TryRead(out _));
        Assert.False(client.TerminationRequested);
    }

    [Fact]
    public async Task BeginCheckpoint_PreemptionReason_ThrowsPointingAtTheJobWideCall()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);
        await using var client = await ConnectAsync(sidecar, rank: 0, worldSize: 2);

        var e = await Assert.ThrowsAsync<ArgumentException>(() => client.BeginCheckpointAsync(10, CheckpointReason.Preemption));

        Assert.Contains(nameof(CheckpointClient.BeginJobPreemptionCheckpointAsync), e.Message, StringComparison.Ordinal);
        Assert.False(sidecar.Begins.Reader.TryRead(out _));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task BeginJobPreemptionCheckpoint_HandleTermination_ExitsWhenTheEarlierOfAgreedAndAnsweredDeadlinePasses(bool agreedIsEarlier)
    {
        // One of the two deadlines has passed, the other is an hour away: the watchdog must take the earlier one.
        var passed = DateTimeOffset.UtcNow - TimeSpan.FromSeconds(1);
        var later = DateTimeOffset.UtcNow + TimeSpan.FromHours(1);
        var (agreed, answered) = agreedIsEarlier ? (passed, later) : (later, passed);

        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);
        sidecar.AnswerBegin = request => new Proto.BeginCheckpointResponse
        {
            Dump = new Proto.DumpRequest
            {
                CheckpointId = "ckpt-own-preemption",
                Reason = Proto.CheckpointReason.Preemption,
                Deadline = Timestamp.FromDateTimeOffset(answered),
                StagingDir = "/staging/ckpt-own-preemption",
            },
        };
        var exited = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var log = new StringWriter();
        var options = Options(sidecar, rank: 1, worldSize: 2);
        options.HandleTermination = true;
        options.PreemptionExitCode = 42;
        options.ExitProcess = code => exited.TrySetResult(code);
        options.Log = TextWriter.Synchronized(log);
        await using var client = await CheckpointClient.ConnectAsync(options);

        await client.BeginJobPreemptionCheckpointAsync(500, agreed);

        Assert.Equal(42, await exited.Task.WaitAsync(Bound));
        Assert.Contains($"the preemption deadline {passed:O} passed", log.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SubmitJobPreemptionDump_CheckpointFailed_OutcomeNamesMissingRanksAndCommitWait()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);
        sidecar.AnswerWait = request => new Proto.CheckpointOutcome
        {
            CheckpointId = request.CheckpointId,
            Status = Proto.CheckpointStatus.Failed,
            Step = 500,
            Error = "ranks 3, 7 had no sealed shard by the deadline",
            MissingRanks = { 3, 7 },
            Timings = new Proto.FlushTimings
            {
                CheckpointId = request.CheckpointId,
                Reason = Proto.CheckpointReason.Preemption,
                Commit = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(2500)),
                CommitWait = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(2250)),
            },
        };
        await using var client = await ConnectAsync(sidecar, rank: 1, worldSize: 8);
        var dump = await client.BeginJobPreemptionCheckpointAsync(500, Deadline);

        var outcome = await client.SubmitDumpAsync(dump, 500, [CheckpointLayout.RankFile(1, "model.bin")]);

        Assert.NotNull(outcome);
        Assert.Equal(CheckpointStatus.Failed, outcome.Status);
        Assert.Equal([3, 7], outcome.MissingRanks.ToArray());
        Assert.NotNull(outcome.Timings);
        Assert.Equal(TimeSpan.FromMilliseconds(2250), outcome.Timings.CommitWait);
        Assert.Equal(TimeSpan.FromMilliseconds(2500), outcome.Timings.Commit);
    }

    [Fact]
    public async Task GetLatestCheckpoint_JobWideCheckpoint_CarriesWorldSize()
    {
        using var dirs = new TestDirectories();
        await using var sidecar = await FakeSidecar.StartAsync(dirs.SocketPath);
        sidecar.Latest = new Proto.CheckpointInfo
        {
            CheckpointId = "step-000000500",
            Directory = "/checkpoints/ns/job/step-000000500/pod-1",
            Step = 500,
            Reason = Proto.CheckpointReason.Preemption,
            WorldSize = 16,
        };
        await using var client = await ConnectAsync(sidecar, rank: 9, worldSize: 16);

        var latest = await client.GetLatestCheckpointAsync();

        Assert.NotNull(latest);
        Assert.Equal(16, latest.WorldSize);
        Assert.Equal(500, latest.Step);
        Assert.Equal("/checkpoints/ns/job/step-000000500/pod-1/rank-9", latest.RankDirectory(client.Rank));
    }

    [Fact]
    public void Mapping_SinglePodAnswers_HaveNoMissingRanksNoCommitWaitAndNoWorldSize()
    {
        var outcome = ProtoMapping.ToOutcome(new Proto.CheckpointOutcome
        {
            CheckpointId = "c",
            Status = Proto.CheckpointStatus.Committed,
            Timings = new Proto.FlushTimings { Commit = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(30)) },
        });
        var latest = ProtoMapping.ToLatest(new Proto.CheckpointInfo { CheckpointId = "c" });

        Assert.Empty(outcome.MissingRanks);
        Assert.Equal(TimeSpan.Zero, outcome.Timings!.CommitWait);
        Assert.Equal(0, latest.WorldSize);
    }

    private static CheckpointClientOptions Options(FakeSidecar sidecar, int rank, int worldSize = 0, string worldId = "") =>
        new(NoEnvironment)
        {
            SocketPath = sidecar.SocketPath,
            Rank = rank,
            WorldSize = worldSize,
            WorldId = worldId,
            Description = $"job-wide test rank {rank}",
            HandleTermination = false,
            Log = TextWriter.Null,
        };

    private static Task<CheckpointClient> ConnectAsync(FakeSidecar sidecar, int rank, int worldSize = 0, string worldId = "") =>
        CheckpointClient.ConnectAsync(Options(sidecar, rank, worldSize, worldId));
}
