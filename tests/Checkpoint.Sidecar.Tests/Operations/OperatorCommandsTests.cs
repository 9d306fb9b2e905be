using System.Text.Json;
using Checkpoint.Sidecar.Operations;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Checkpoint.Sidecar.Tests.Storage;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Checkpoint.Sidecar.Tests.Operations;

/// <summary>
/// The operator commands over real job directories written by the sidecar's own writer: what they
/// report, their exit codes, and that prune keeps what resume picks.
/// </summary>
public sealed class OperatorCommandsTests : IDisposable
{
    private static readonly JobWorld TwoRanks = new(2, "run1");

    /// <summary>Bounds a command that the code would block in forever (a FIFO opened for reading).</summary>
    private static readonly TimeSpan NeverBlocks = TimeSpan.FromSeconds(60);

    private readonly TempDirectory _temp = new();
    private readonly string _storage;
    private readonly CheckpointLayout _layout;
    private readonly CheckpointStore _store;
    private readonly JobWideCheckpoints _checkpoints;
    private readonly FakeTimeProvider _time = new(JobWideCheckpoints.Now.AddMinutes(5));

    public OperatorCommandsTests()
    {
        _storage = _temp.CreateDirectory("storage");
        _layout = new CheckpointLayout(_storage, "ns", "job");
        _store = new CheckpointStore(_layout, NullLogger<CheckpointStore>.Instance);
        _checkpoints = new JobWideCheckpoints(_temp, _layout);
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task List_CommittedUncommittedAndDamaged_ReportsEachAndWhatResumePicks()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2);
        await _checkpoints.SealAsync(_checkpoints.Target("pod-b"), step: 3, TwoRanks, rank: 1, seed: 3);
        File.Delete(Path.Combine(ShardDirectory(2), "rank-0", "model.bin"));

        var (code, output, _) = await RunAsync("list", "--json");

        Assert.Equal(0, code);
        using var report = JsonDocument.Parse(output);
        var root = report.RootElement;
        Assert.Equal(1, root.GetProperty("formatVersion").GetInt32());
        Assert.Equal("step-000000002", root.GetProperty("latest").GetString());
        Assert.Equal("step-000000001", root.GetProperty("resumeWouldPick").GetString());
        var entries = root.GetProperty("checkpoints").EnumerateArray().ToList();
        Assert.Equal(["step-000000003", "step-000000002", "step-000000001"], entries.Select(e => e.GetProperty("id").GetString()));
        Assert.Equal(["uncommitted", "damaged", "committed"], entries.Select(e => e.GetProperty("state").GetString()));
        Assert.Equal(1, entries[0].GetProperty("missingRanks").GetInt32());
        Assert.Equal(2, entries[0].GetProperty("worldSize").GetInt32());
        Assert.Contains("rank-0/model.bin", entries[1].GetProperty("problem").GetString(), StringComparison.Ordinal);
        Assert.True(entries[1].GetProperty("latest").GetBoolean());
        Assert.True(entries[2].GetProperty("resumeWouldPick").GetBoolean());
        Assert.Equal(JobWideCheckpoints.FileSize, entries[2].GetProperty("bytes").GetInt64());
        Assert.Equal(300, entries[2].GetProperty("ageSeconds").GetDouble());
        Assert.Equal(1, entries[2].GetProperty("pods").GetInt32());
        Assert.Equal("periodic", entries[2].GetProperty("reason").GetString());
    }

    [Fact]
    public async Task List_Text_HasARowPerCheckpointAndMarksResumeAndLatest()
    {
        await _checkpoints.CommitFormat1Async(_store, "20261129T024500123Z-periodic-00000000000000ab");
        await _checkpoints.CommitSinglePodAsync(step: 7, seed: 1);

        var (code, output, _) = await RunAsync("list");

        Assert.Equal(0, code);
        var lines = output.Split('\n');
        Assert.Contains(lines, l => l.StartsWith("STEP", StringComparison.Ordinal) && l.Contains("STATE", StringComparison.Ordinal));
        var row = Assert.Single(lines, l => l.StartsWith("7 ", StringComparison.Ordinal));
        Assert.Matches(@"^7\s+step-000000007\s+committed\s+periodic\s+1\s+1\s+4\.9 KiB\s+5m\s+<- resume, LATEST$", row);
        Assert.Single(lines, l => l.StartsWith("40 ", StringComparison.Ordinal) && l.Contains("20261129T024500123Z-periodic-00000000000000ab  committed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task List_NoJobDirectory_SaysSoAndExitsZero()
    {
        var (code, output, _) = await RunAsync("list", "--job", "other");

        Assert.Equal(0, code);
        Assert.Contains("does not exist (check --namespace and --job)", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Verify_Default_VerifiesWhatResumePicks_ExitsZero()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2);

        var (code, output, _) = await RunAsync("verify");

        Assert.Equal(0, code);
        Assert.StartsWith("ok          step-000000002  4.9 KiB re-read", output, StringComparison.Ordinal);
        Assert.DoesNotContain("step-000000001", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Verify_OneBitFlipped_ExitsOne_NamingTheFileAndWhereResumeFallsBack()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2);
        FileDamage.FlipBit(Path.Combine(ShardDirectory(2), "rank-0", "model.bin"), 100);

        var (code, output, _) = await RunAsync("verify");

        Assert.Equal(1, code);
        Assert.Matches(@"FAILED\s+step-000000002\s+shard '[^']+': file 'rank-0/model.bin' hashes to [0-9a-f]{32}, the manifest says [0-9a-f]{32}", output);
        Assert.Contains("Resume would pick step-000000001 (it verifies).", output, StringComparison.Ordinal);

        (code, output, _) = await RunAsync("verify", "1", "--json");
        Assert.Equal(0, code);
        using var report = JsonDocument.Parse(output);
        var result = Assert.Single(report.RootElement.GetProperty("results").EnumerateArray());
        Assert.Equal("ok", result.GetProperty("outcome").GetString());
        Assert.Equal(1, result.GetProperty("step").GetInt64());
    }

    [Fact]
    public async Task Verify_All_UncommittedStepIsNotAFailure_ButOneNamedIs()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.SealAsync(_checkpoints.Target("pod-b"), step: 3, TwoRanks, rank: 1, seed: 3);

        var (code, output, _) = await RunAsync("verify", "--all");
        Assert.Equal(0, code);
        Assert.Contains("uncommitted step-000000003", output, StringComparison.Ordinal);
        Assert.Contains("ok          step-000000001", output, StringComparison.Ordinal);

        (code, _, _) = await RunAsync("verify", "step-000000003");
        Assert.Equal(1, code);
    }

    [Fact]
    public async Task Verify_NothingCommitted_ExitsOne()
    {
        Directory.CreateDirectory(_layout.JobDirectory);

        var (code, output, _) = await RunAsync("verify");

        Assert.Equal(1, code);
        Assert.Contains("No committed checkpoint to verify", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Inspect_CommittedStep_ShowsManifestShardsAndFlushRecordAgainstGrace()
    {
        var manifest = await _checkpoints.CommitSinglePodAsync(step: 5, seed: 5);
        var records = new FlushRecordStore(_layout, NullLogger<FlushRecordStore>.Instance);
        records.Write(Record("20261130T120000000Z-periodic-00000000000000a1", step: 5, total: 3));
        records.Write(Record("20261130T110000000Z-periodic-00000000000000a0", step: 4, total: 9));

        var (code, output, _) = await RunAsync("inspect", "5");

        Assert.Equal(0, code);
        Assert.StartsWith("Checkpoint step-000000005 (job-wide, format 2): committed", output, StringComparison.Ordinal);
        Assert.Contains($"  {manifest.Shards[0].Directory}  pod-a", output, StringComparison.Ordinal);
        Assert.Contains("Flush records (1, newest first)", output, StringComparison.Ordinal);
        Assert.Contains("copy 1.500 s (5 %)", output, StringComparison.Ordinal);
        Assert.Contains("total 3.000 s (10 %) of 30 s", output, StringComparison.Ordinal);

        (code, output, _) = await RunAsync("inspect", "step-000000005", "--json");
        Assert.Equal(0, code);
        using var report = JsonDocument.Parse(output);
        var root = report.RootElement;
        // The manifest as stored, in its own published format.
        Assert.Equal(
            JobManifest.FromUtf8Json(await File.ReadAllBytesAsync(Path.Combine(_layout.StepDirectory(5), "manifest.json"))).ToUtf8Json(),
            JobManifest.FromUtf8Json(JsonSerializer.SerializeToUtf8Bytes(root.GetProperty("jobManifest"))).ToUtf8Json());
        Assert.Equal(manifest.Shards[0].Files[0].Xxh128,
            root.GetProperty("jobManifest").GetProperty("shards")[0].GetProperty("files")[0].GetProperty("xxh128").GetString());
        var record = Assert.Single(root.GetProperty("flushRecords").EnumerateArray());
        Assert.Equal(30, record.GetProperty("gracePeriodSeconds").GetDouble());
        Assert.Equal(3, record.GetProperty("timings").GetProperty("totalSeconds").GetDouble());
    }

    [Theory]
    [InlineData(true, "1 file(s), 4.9 KiB, read back; 0 file(s)")]
    [InlineData(false, "0 file(s), 0 B, read back; 1 file(s), 4.9 KiB, on the write-side hash and fsync only (resume hashes them)")]
    public async Task Inspect_CommittedStep_SaysHowItsFilesWereVerified(bool readBack, string expected)
    {
        var manifest = await _checkpoints.CommitSinglePodAsync(step: 5, seed: 5, readBack: readBack);

        var (code, output, _) = await RunAsync("inspect", "5");

        Assert.Equal(0, code);
        Assert.Contains("  verified before the commit: " + expected, output, StringComparison.Ordinal);
        (code, output, _) = await RunAsync("inspect", "5", "--json");
        using var report = JsonDocument.Parse(output);
        Assert.Equal(manifest.Shards[0].Files[0].Verification,
            report.RootElement.GetProperty("jobManifest").GetProperty("shards")[0].GetProperty("files")[0].GetProperty("verification").GetString());
    }

    [Fact]
    public async Task Inspect_Format1Checkpoint_ShowsItsManifest()
    {
        const string legacyId = "20261129T024500123Z-periodic-00000000000000ab";
        await _checkpoints.CommitFormat1Async(_store, legacyId);

        var (code, output, _) = await RunAsync("inspect", legacyId, "--json");

        Assert.Equal(0, code);
        using var report = JsonDocument.Parse(output);
        Assert.Equal(40, report.RootElement.GetProperty("manifest").GetProperty("step").GetInt64());
        Assert.Equal(1, report.RootElement.GetProperty("format").GetInt32());
        Assert.Equal(JsonValueKind.Null, report.RootElement.GetProperty("jobManifest").ValueKind);
    }

    [Fact]
    public async Task Prune_Keep1_RemovesOlderSteps_KeepsResumePickAndNewerUncommitted_DryRunRemovesNothing()
    {
        const string legacyId = "20261129T024500123Z-periodic-00000000000000ab";
        await _checkpoints.CommitFormat1Async(_store, legacyId);
        for (var step = 1; step <= 3; step++)
        {
            await _checkpoints.CommitSinglePodAsync(step, seed: step);
        }

        await _checkpoints.SealAsync(_checkpoints.Target("pod-b"), step: 2, TwoRanks, rank: 1, seed: 20);
        await _checkpoints.SealAsync(_checkpoints.Target("pod-b"), step: 9, TwoRanks, rank: 1, seed: 90);
        var before = Directory.GetFileSystemEntries(_layout.JobDirectory).Order(StringComparer.Ordinal).ToList();

        var (code, output, _) = await RunAsync("prune", "--keep", "1", "--dry-run", "--json");
        Assert.Equal(0, code);
        using (var report = JsonDocument.Parse(output))
        {
            Assert.Equal(["step-000000002", "step-000000001", legacyId], report.RootElement.GetProperty("removed").EnumerateArray().Select(e => e.GetString()));
            Assert.True(report.RootElement.GetProperty("dryRun").GetBoolean());
        }

        Assert.Equal(before, Directory.GetFileSystemEntries(_layout.JobDirectory).Order(StringComparer.Ordinal));

        (code, output, _) = await RunAsync("prune", "--keep=1");
        Assert.Equal(0, code);
        Assert.Contains("removed step-000000001", output, StringComparison.Ordinal);
        Assert.Contains("removed " + legacyId, output, StringComparison.Ordinal);
        Assert.Equal(["step-000000003", "step-000000009"], _layout.StepCandidates().Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.Empty(_layout.CommittedCandidates());
        Assert.Empty(Directory.GetDirectories(_layout.JobDirectory, "*.deleting"));
        Assert.Equal("step-000000003", _store.FindLatestValid(verifyHashes: true, JobWideCheckpoints.BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task Prune_NewestStepFailsItsHashes_KeepsTheOlderStepResumeFallsBackTo()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2);
        await _checkpoints.CommitSinglePodAsync(step: 3, seed: 3);
        FileDamage.FlipBit(Path.Combine(ShardDirectory(3), "rank-0", "model.bin"), 10);

        var (code, output, _) = await RunAsync("prune", "--keep", "1");

        Assert.Equal(0, code);
        Assert.Contains("Resume would pick step-000000002", output, StringComparison.Ordinal);
        Assert.Equal(["step-000000002", "step-000000003"], _layout.StepCandidates().Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.Equal("step-000000002", _store.FindLatestValid(verifyHashes: true, JobWideCheckpoints.BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task Prune_OnlyAFormat1CheckpointVerifies_RemovesNothing()
    {
        const string legacyId = "20261129T024500123Z-periodic-00000000000000ab";
        await _checkpoints.CommitFormat1Async(_store, legacyId);
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        FileDamage.FlipBit(Path.Combine(ShardDirectory(1), "rank-0", "model.bin"), 10);

        var (code, output, _) = await RunAsync("prune", "--keep", "1");

        Assert.Equal(0, code);
        Assert.Contains("nothing is removed", output, StringComparison.Ordinal);
        Assert.Equal([legacyId], _layout.CommittedCandidates());
        Assert.Single(_layout.StepCandidates());
    }

    [Fact]
    public async Task Prune_SymlinkedStepToOutside_RemovesTheLinkNeverWhatItPointsTo()
    {
        await _checkpoints.CommitSinglePodAsync(step: 5, seed: 5);
        var outside = _temp.CreateDirectory("outside");
        var precious = TempDirectory.WriteFile(outside, "precious/data.bin", [1, 2, 3]);
        Directory.CreateSymbolicLink(_layout.StepDirectory(1), outside);
        Directory.CreateSymbolicLink(_layout.CommittedDirectory("20261129T024500123Z-periodic-00000000000000ab"), outside);

        var (code, output, _) = await RunAsync("prune", "--keep", "1");

        Assert.Equal(0, code);
        Assert.Contains("removed step-000000001", output, StringComparison.Ordinal);
        Assert.True(File.Exists(precious));
        Assert.Equal(["step-000000005"], _layout.StepCandidates().Select(c => c.Name));
    }

    [Theory]
    [InlineData("fifo")]
    [InlineData("huge sparse file")]
    [InlineData("symlinked file")]
    [InlineData("escaping path")]
    [InlineData("escaping shard directory")]
    [InlineData("fifo manifest")]
    [InlineData("forged manifest")]
    [InlineData("symlinked step")]
    public async Task HostileStorage_NeverHangsOrCrashes_VerifyFailsNamingIt_ListShowsDamaged(string hostile)
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        var manifest = await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2);
        var data = Path.Combine(ShardDirectory(2), "rank-0", "model.bin");
        var manifestPath = Path.Combine(_layout.StepDirectory(2), "manifest.json");
        var outside = TempDirectory.WriteFile(_temp.CreateDirectory("outside"), "secret.bin", TempDirectory.RandomBytes(JobWideCheckpoints.FileSize, 2));
        string expected;
        switch (hostile)
        {
            case "fifo":
                File.Delete(data);
                Posix.MakeFifo(data);
                expected = "FIFO";
                break;
            case "huge sparse file":
                using (var file = File.OpenHandle(data, FileMode.Open, FileAccess.Write))
                {
                    RandomAccess.SetLength(file, 1L << 40);
                }

                expected = "has 1099511627776 bytes, the manifest says 5000";
                break;
            case "symlinked file":
                File.Delete(data);
                File.CreateSymbolicLink(data, outside);
                expected = "symlink";
                break;
            case "escaping path":
                RewriteManifest(manifest with { Shards = [manifest.Shards[0] with { Files = [manifest.Shards[0].Files[0] with { Path = "../../../outside/secret.bin" }] }] });
                expected = "unsafe path";
                break;
            case "escaping shard directory":
                RewriteManifest(manifest with { Shards = [manifest.Shards[0] with { Directory = "../../outside" }] });
                expected = "not one of its own";
                break;
            case "fifo manifest":
                File.Delete(manifestPath);
                Posix.MakeFifo(manifestPath);
                expected = "FIFO";
                break;
            case "forged manifest":
                File.Delete(manifestPath);
                await File.WriteAllTextAsync(manifestPath, "{ \"formatVersion\": 2, \"id\": \"step-000000002\", \"shards\": [null] }");
                expected = "no readable job manifest";
                break;
            default:
                Directory.Move(_layout.StepDirectory(2), _temp.Combine("moved"));
                Directory.CreateSymbolicLink(_layout.StepDirectory(2), _temp.Combine("moved"));
                // Opened with O_DIRECTORY|O_NOFOLLOW, a symlink reads as "not a directory".
                expected = "'step-000000002' is not a directory";
                break;
        }

        var (code, output, error) = await RunAsync("verify", "2").WaitAsync(NeverBlocks);
        Assert.Equal(1, code);
        Assert.Empty(error);
        var failure = Assert.Single(output.Split('\n'), l => l.StartsWith("FAILED", StringComparison.Ordinal));
        Assert.Contains(expected, failure, StringComparison.Ordinal);
        Assert.Contains("Resume would pick step-000000001", output, StringComparison.Ordinal);

        (code, output, _) = await RunAsync("list", "--json").WaitAsync(NeverBlocks);
        Assert.Equal(0, code);
        using var report = JsonDocument.Parse(output);
        var entry = report.RootElement.GetProperty("checkpoints").EnumerateArray().Single(e => e.GetProperty("id").GetString() == "step-000000002");
        Assert.Equal("damaged", entry.GetProperty("state").GetString());
        Assert.Equal("step-000000001", report.RootElement.GetProperty("resumeWouldPick").GetString());

        (code, _, _) = await RunAsync("inspect", "2").WaitAsync(NeverBlocks);
        Assert.Equal(0, code);
    }

    [Fact]
    public async Task Text_FromStorage_ControlCharactersAreNotSentToTheTerminal()
    {
        var manifest = await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2);
        RewriteManifest(manifest with { Reason = "periodic\u001b]0;pwned\u0007" });

        var (code, output, _) = await RunAsync("inspect", "2");

        Assert.Equal(0, code);
        Assert.DoesNotContain('\u001b', output);
        Assert.Contains("periodic?]0;pwned?", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("lst", "", "unknown command 'lst'")]
    [InlineData("list --bogus", "", "unknown flag '--bogus' for 'list'")]
    [InlineData("list", "no storage", "--storage is not given and CHECKPOINT_STORAGE_DIR is not set")]
    [InlineData("list --storage /nonexistent/dir", "", "--storage: '/nonexistent/dir' does not exist")]
    [InlineData("list --namespace ..", "", "--namespace: '..' must be a single directory name")]
    [InlineData("list --job a/b", "", "--job: 'a/b' must be a single directory name")]
    [InlineData("list --storage", "", "--storage needs a value")]
    [InlineData("list extra", "", "'list' takes no argument, but was given 'extra'")]
    [InlineData("list --json=yes", "", "--json takes no value")]
    [InlineData("prune", "", "--keep N is required")]
    [InlineData("prune --keep 0", "", "--keep: '0' must be a whole number of at least 1")]
    [InlineData("verify 1 --all", "", "give a checkpoint or --all, not both")]
    [InlineData("verify 77", "", "no checkpoint '77'")]
    [InlineData("inspect", "", "name the checkpoint to inspect")]
    public async Task Usage_Errors_ExitTwo_NamingTheFlag(string commandLine, string environment, string expected)
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);

        var (code, output, error) = await RunAsync(environment == "no storage" ? new Dictionary<string, string>() : null, commandLine.Split(' '));

        Assert.Equal(2, code);
        Assert.Empty(output);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.Contains("checkpoint-sidecar help", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Version_PrintsTheProjectVersion_AndHelpListsTheCommands()
    {
        var (code, output, _) = await RunAsync("--version");
        Assert.Equal(0, code);
        Assert.StartsWith("checkpoint-sidecar 0.2.0", output, StringComparison.Ordinal);

        (code, output, _) = await RunAsync("version", "--json");
        Assert.Equal(0, code);
        using var report = JsonDocument.Parse(output);
        Assert.Equal("0.2.0", report.RootElement.GetProperty("version").GetString());

        (code, output, _) = await RunAsync("help");
        Assert.Equal(0, code);
        foreach (var command in new[] { "list", "verify", "inspect", "prune", "version", "prestop" })
        {
            Assert.Contains("checkpoint-sidecar " + command, output, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(new[] { "list" }, true)]
    [InlineData(new[] { "--version" }, true)]
    [InlineData(new[] { "typo" }, true)]
    [InlineData(new string[0], false)]
    [InlineData(new[] { "--urls=http://x" }, false)]
    [InlineData(new[] { "Kestrel:Limits=1" }, false)]
    public void Handles_OperatorCommandsAndBareWords_NotTheSidecarsOwnArguments(string[] args, bool handled) =>
        Assert.Equal(handled, OperatorCommands.Handles(args));

    private Task<(int Code, string Output, string Error)> RunAsync(params string[] args) => RunAsync(null, args);

    /// <param name="environment">null: the sidecar's variables naming this test's job.</param>
    private Task<(int Code, string Output, string Error)> RunAsync(Dictionary<string, string>? environment, string[] args)
    {
        environment ??= new Dictionary<string, string>
        {
            ["CHECKPOINT_STORAGE_DIR"] = _storage,
            ["POD_NAMESPACE"] = "ns",
            ["CHECKPOINT_JOB_NAME"] = "job",
        };

        // On a thread of its own, so a command that blocks fails the test's WaitAsync instead of hanging it.
        return Task.Run(() =>
        {
            using var output = new StringWriter();
            using var error = new StringWriter();
            var code = OperatorCommands.Run(args, output, error, v => environment.GetValueOrDefault(v), _time, CancellationToken.None);
            return (code, output.ToString(), error.ToString());
        });
    }

    private string ShardDirectory(long step)
    {
        var manifest = _layout.StepDirectory(step);
        return Directory.GetDirectories(manifest).Single(d => Path.GetFileName(d) != CheckpointLayout.ShardsDirectoryName);
    }

    private void RewriteManifest(JobManifest manifest)
    {
        var path = Path.Combine(_layout.StepDirectory(manifest.Step), "manifest.json");
        File.Delete(path);
        File.WriteAllBytes(path, manifest.ToUtf8Json());
    }

    private static FlushRecord Record(string checkpointId, long step, double total) => new()
    {
        CheckpointId = checkpointId,
        Pod = "pod-a",
        Reason = "periodic",
        Outcome = "committed",
        Step = step,
        TriggeredAt = JobWideCheckpoints.Now,
        EndedAt = JobWideCheckpoints.Now.AddSeconds(total),
        GracePeriodSeconds = 30,
        DeadlineMissed = false,
        Timings = new FlushRecordTimings(0.1, 0.5, 1.5, 0.6, 0.3, total, total / 30, 5000, 0.01),
    };
}
