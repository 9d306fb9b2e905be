using System.Text;
using Checkpoint.Sidecar.Storage;
using Checkpoint.Sidecar.Storage.JobWide;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// The per-file <c>verification</c> of manifests: written by the copier, left out when unknown so
/// older manifests read and write as before, and acted on by resume, which hashes every file the
/// flush did not read back even when CHECKPOINT_VERIFY_ON_RESUME is off.
/// </summary>
public sealed class FileVerificationTests : IDisposable
{
    private const int BufferSize = JobWideCheckpoints.BufferSize;

    private readonly TempDirectory _temp = new();
    private readonly CheckpointLayout _layout;
    private readonly CheckpointStore _store;
    private readonly JobWideCheckpoints _checkpoints;

    public FileVerificationTests()
    {
        _layout = new CheckpointLayout(_temp.CreateDirectory("storage"), "ns", "job");
        _store = new CheckpointStore(_layout, NullLogger<CheckpointStore>.Instance);
        _checkpoints = new JobWideCheckpoints(_temp, _layout);
    }

    public void Dispose() => _temp.Dispose();

    private static CheckpointManifest Format1(params ManifestFile[] files) => new()
    {
        FormatVersion = CheckpointManifest.CurrentFormatVersion,
        Id = "20261130T120000000Z-periodic-0000000000000001",
        Step = 1,
        Created = JobWideCheckpoints.Now,
        Reason = "periodic",
        Files = files,
        Ranks = [new ManifestRank(0, 1, new Dictionary<string, string>())],
        Timings = JobWideCheckpoints.SomeTimings,
    };

    [Fact]
    public void ManifestJson_WithVerification_RoundTrips()
    {
        var manifest = Format1(
            new ManifestFile("a.bin", 1, new string('a', 32), ManifestFile.ReadBack),
            new ManifestFile("b.bin", 2, new string('b', 32), ManifestFile.WriteHash));

        var json = manifest.ToUtf8Json();
        var read = CheckpointManifest.FromUtf8Json(json);

        Assert.Contains("\"verification\": \"write-hash\"", Encoding.UTF8.GetString(json), StringComparison.Ordinal);
        Assert.Equal(manifest.Files, read.Files);
    }

    [Fact]
    public void ManifestJson_WithoutVerification_IsTheOldFormatByteForByte()
    {
        // As sidecars wrote manifests before the field: reading and writing one must not change its bytes (or its hash).
        const string Old = """
            {
              "formatVersion": 1,
              "id": "20261130T120000000Z-periodic-0000000000000001",
              "step": 1,
              "created": "2026-11-30T12:00:00+00:00",
              "reason": "periodic",
              "files": [
                {
                  "path": "a.bin",
                  "size": 1,
                  "xxh128": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                }
              ],
              "ranks": [
                {
                  "rank": 0,
                  "step": 1,
                  "metadata": {}
                }
              ],
              "timings": {
                "budgetSeconds": 30,
                "notifySeconds": 0.1,
                "dumpSeconds": 0.2,
                "copySeconds": 0.3,
                "verifySeconds": 0.4
              }
            }
            """;

        var read = CheckpointManifest.FromUtf8Json(Encoding.UTF8.GetBytes(Old));

        Assert.Null(Assert.Single(read.Files).Verification);
        Assert.Equal(Old.ReplaceLineEndings("\n"), Encoding.UTF8.GetString(read.ToUtf8Json()).ReplaceLineEndings("\n"));
    }

    [Fact]
    public void ManifestJson_UnknownMemberOfAFile_IsIgnored()
    {
        // What a sidecar that predates a member does with it: the same source-generated reader skips it.
        var json = Encoding.UTF8.GetString(Format1(new ManifestFile("a.bin", 1, new string('a', 32), ManifestFile.ReadBack)).ToUtf8Json())
            .Replace("\"verification\": \"read-back\"", "\"verification\": \"read-back\", \"someLaterField\": {\"x\": [1]}", StringComparison.Ordinal);

        var read = CheckpointManifest.FromUtf8Json(Encoding.UTF8.GetBytes(json));

        Assert.Equal(ManifestFile.ReadBack, Assert.Single(read.Files).Verification);
    }

    [Theory]
    [InlineData(true, ManifestFile.ReadBack)]
    [InlineData(false, ManifestFile.WriteHash)]
    public async Task JobManifest_RecordsEachFilesVerification(bool readBack, string expected)
    {
        var manifest = await _checkpoints.CommitSinglePodAsync(step: 5, seed: 1, readBack: readBack);

        Assert.Equal(expected, Assert.Single(Assert.Single(manifest.Shards).Files).Verification);
        var onStorage = JobManifest.FromUtf8Json(await File.ReadAllBytesAsync(Path.Combine(_layout.StepDirectory(5), CheckpointLayout.ManifestFileName)));
        Assert.Equal(expected, Assert.Single(Assert.Single(onStorage.Shards).Files).Verification);
    }

    [Fact]
    public async Task Resume_WithoutVerifyOnResume_HashesWriteHashFiles_AndFallsBackWhenOneIsCorrupt()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2, readBack: false);
        FileDamage.FlipBit(ModelFile(step: 2), 100);
        var invalid = new List<string>();

        var found = _store.FindLatestValid(verifyHashes: false, BufferSize, (_, problem) => invalid.Add(problem), CancellationToken.None);

        Assert.Equal("step-000000001", found?.Id);
        Assert.Contains("hashes to", Assert.Single(invalid), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Resume_WithoutVerifyOnResume_IntactWriteHashFiles_Resume()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2, readBack: false);

        Assert.Equal("step-000000002", _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task Resume_WithoutVerifyOnResume_ReadBackFilesAreCheckedBySizeAsBefore()
    {
        await _checkpoints.CommitSinglePodAsync(step: 1, seed: 1);
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2);
        FileDamage.FlipBit(ModelFile(step: 2), 100);

        Assert.Equal("step-000000002", _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None)?.Id);
        Assert.Equal("step-000000001", _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task Resume_ManifestWithoutVerification_StillResumes()
    {
        // A step committed by a sidecar that predates the field.
        await _checkpoints.CommitSinglePodAsync(step: 3, seed: 3, readBack: false);
        var path = Path.Combine(_layout.StepDirectory(3), CheckpointLayout.ManifestFileName);
        var manifest = JobManifest.FromUtf8Json(await File.ReadAllBytesAsync(path));
        var old = manifest with { Shards = manifest.Shards.Select(s => s with { Files = s.Files.Select(f => f with { Verification = null }).ToList() }).ToList() };
        await File.WriteAllBytesAsync(path, old.ToUtf8Json());
        Assert.DoesNotContain("verification", await File.ReadAllTextAsync(path), StringComparison.Ordinal);

        Assert.Equal("step-000000003", _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None)?.Id);
        Assert.Equal("step-000000003", _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task OperatorCheck_WithoutHashes_StaysSizeOnly()
    {
        // The operator's listing checks sizes; hashing write-hash files is for resume and `verify`.
        await _checkpoints.CommitSinglePodAsync(step: 2, seed: 2, readBack: false);
        FileDamage.FlipBit(ModelFile(step: 2), 100);

        Assert.Null(_store.Check("step-000000002", verifyHashes: false, BufferSize, CancellationToken.None).Problem);
        Assert.NotNull(_store.Check("step-000000002", verifyHashes: true, BufferSize, CancellationToken.None).Problem);
    }

    private string ModelFile(long step)
    {
        var manifest = JobManifest.FromUtf8Json(File.ReadAllBytes(Path.Combine(_layout.StepDirectory(step), CheckpointLayout.ManifestFileName)));
        return Path.Combine(_layout.StepDirectory(step), Assert.Single(manifest.Shards).Directory, "rank-0", "model.bin");
    }
}
