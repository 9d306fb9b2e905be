using System.Diagnostics;
using System.Text.Json;
using Checkpoint.Sidecar.Storage;
using Checkpoint.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests.Storage;

public sealed class CheckpointStoreTests : IDisposable
{
    private const int BufferSize = 64 * 1024;

    /// <summary>Bounds a call that the code before the fix would block in forever (a FIFO opened for reading).</summary>
    private static readonly TimeSpan NeverBlocks = TimeSpan.FromSeconds(30);
    private static readonly IReadOnlySet<string> NoneReported = new HashSet<string>(StringComparer.Ordinal);

    private readonly TempDirectory _temp = new();
    private readonly CheckpointLayout _layout;
    private readonly CheckpointStore _store;
    private readonly CheckpointCopier _copier = new(parallelism: 2, bufferSize: BufferSize, TimeProvider.System);

    public CheckpointStoreTests()
    {
        _layout = new CheckpointLayout(_temp.CreateDirectory("storage"), "ns", "job");
        _store = new CheckpointStore(_layout, NullLogger<CheckpointStore>.Instance);
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task SweepLeftovers_PartialDeletingAndLatestTmp_RemovesThemButNotCommitted()
    {
        await CommitAsync(Id(1), seed: 1);
        await CopyToPartialAsync(Id(2), seed: 2);
        TempDirectory.WriteFile(_layout.DeletingDirectory(Id(0)), "rank0/model.bin", [1]);
        await File.WriteAllTextAsync(_layout.LatestTempFile, Id(2));

        var swept = _store.SweepLeftovers();

        Assert.Equal(2, swept);
        Assert.False(Directory.Exists(_layout.PartialDirectory(Id(2))));
        Assert.False(Directory.Exists(_layout.DeletingDirectory(Id(0))));
        Assert.False(File.Exists(_layout.LatestTempFile));
        Assert.True(File.Exists(Path.Combine(_layout.CommittedDirectory(Id(1)), "manifest.json")));
        Assert.Equal(Id(1), _store.ReadLatestId());
        Assert.NotNull(_store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None));
    }

    [Fact]
    public void SweepLeftovers_NoJobDirectory_ReturnsZero()
    {
        Assert.Equal(0, _store.SweepLeftovers());
        Assert.False(Directory.Exists(_layout.JobDirectory));
    }

    [Fact]
    public async Task FindLatestValid_LatestValid_ReturnsLatestEvenWhenOlder()
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        Assert.Equal(Id(2), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);

        await File.WriteAllTextAsync(_layout.LatestFile, Id(1) + "\n");
        var found = _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None);

        Assert.NotNull(found);
        Assert.Equal(Id(1), found.Id);
        Assert.Equal(_layout.CommittedDirectory(Id(1)), found.Directory);
    }

    [Fact]
    public async Task FindLatestValid_LatestBitFlippedWithVerifyHashes_FallsBackToNewestOtherValid()
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        var latest = await CommitAsync(Id(3), seed: 3);
        FileDamage.FlipBit(Path.Combine(_layout.CommittedDirectory(Id(3)), latest.Files[1].Path), 100);
        var invalid = new List<(string Id, string Problem)>();

        var found = _store.FindLatestValid(verifyHashes: true, BufferSize, (id, problem) => invalid.Add((id, problem)), CancellationToken.None);

        Assert.Equal(Id(2), found?.Id);
        var (invalidId, problem) = Assert.Single(invalid);
        Assert.Equal(Id(3), invalidId);
        Assert.Contains(latest.Files[1].Path, problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FindLatestValid_LatestBitFlippedWithoutVerifyHashes_ReturnsLatest()
    {
        await CommitAsync(Id(1), seed: 1);
        var latest = await CommitAsync(Id(2), seed: 2);
        FileDamage.FlipBit(Path.Combine(_layout.CommittedDirectory(Id(2)), latest.Files[0].Path), 0);

        // Without hashing only names and sizes are checked; the flipped bit goes unseen.
        Assert.Equal(Id(2), _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestFileTruncatedWithoutVerifyHashes_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        var latest = await CommitAsync(Id(2), seed: 2);
        using (var stream = File.OpenWrite(Path.Combine(_layout.CommittedDirectory(Id(2)), latest.Files[0].Path)))
        {
            stream.SetLength(latest.Files[0].Size - 1);
        }

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestFileMissing_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        var latest = await CommitAsync(Id(2), seed: 2);
        File.Delete(Path.Combine(_layout.CommittedDirectory(Id(2)), latest.Files[1].Path));

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestManifestMissing_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        File.Delete(Path.Combine(_layout.CommittedDirectory(Id(2)), "manifest.json"));

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestManifestNamesOtherId_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        var latest = await CommitAsync(Id(2), seed: 2);
        await File.WriteAllBytesAsync(
            Path.Combine(_layout.CommittedDirectory(Id(2)), "manifest.json"), (latest with { Id = Id(7) }).ToUtf8Json());

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("null")]
    [InlineData("{\"formatVersion\": 1}")]
    public async Task FindLatestValid_LatestManifestUnreadable_FallsBack(string manifest)
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        await File.WriteAllTextAsync(Path.Combine(_layout.CommittedDirectory(Id(2)), "manifest.json"), manifest);

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestManifestWithNullFiles_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        var latest = await CommitAsync(Id(2), seed: 2);
        var path = Path.Combine(_layout.CommittedDirectory(Id(2)), "manifest.json");
        await File.WriteAllTextAsync(path, (await File.ReadAllTextAsync(path)).Replace("\"files\": [", "\"files\": null, \"x\": [", StringComparison.Ordinal));
        Assert.Contains("\"files\": null", await File.ReadAllTextAsync(path), StringComparison.Ordinal);

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
        Assert.NotEmpty(latest.Files);
    }

    [Fact]
    public async Task FindLatestValid_LatestManifestListsUnsafePath_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        var latest = await CommitAsync(Id(2), seed: 2);
        var escaping = latest with { Files = [.. latest.Files, new ManifestFile("../" + Id(1) + "/manifest.json", 1, new string('0', 32))] };
        await File.WriteAllBytesAsync(Path.Combine(_layout.CommittedDirectory(Id(2)), "manifest.json"), escaping.ToUtf8Json());

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: false, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_NoneValid_ReturnsNull()
    {
        await CommitAsync(Id(1), seed: 1);
        var second = await CommitAsync(Id(2), seed: 2);
        File.Delete(Path.Combine(_layout.CommittedDirectory(Id(1)), "manifest.json"));
        FileDamage.FlipBit(Path.Combine(_layout.CommittedDirectory(Id(2)), second.Files[0].Path), 3);
        var invalid = new List<string>();

        var found = _store.FindLatestValid(verifyHashes: true, BufferSize, (id, _) => invalid.Add(id), CancellationToken.None);

        Assert.Null(found);
        Assert.Equal([Id(2), Id(1)], invalid);
    }

    [Fact]
    public void FindLatestValid_NoJobDirectory_ReturnsNull()
    {
        Assert.Null(_store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None));
    }

    [Fact]
    public async Task FindLatestValid_NewerPartialWithManifest_IsNeverReturned()
    {
        await CommitAsync(Id(1), seed: 1);
        var (partial, entries) = await CopyToPartialAsync(Id(2), seed: 2);
        await File.WriteAllBytesAsync(Path.Combine(partial, "manifest.json"), NewManifest(Id(2), entries).ToUtf8Json());

        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestNamesPartialWithManifest_IsNeverReturned()
    {
        var partialName = Id(2) + ".partial";
        var (partial, entries) = await CopyToPartialAsync(Id(2), seed: 2);
        await File.WriteAllBytesAsync(Path.Combine(partial, "manifest.json"), NewManifest(partialName, entries).ToUtf8Json());
        await File.WriteAllTextAsync(_layout.LatestFile, partialName + "\n");

        Assert.Null(_store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None));

        await CommitAsync(Id(1), seed: 1);
        await File.WriteAllTextAsync(_layout.LatestFile, partialName + "\n");
        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestEscapesJobDirectory_IsNeverReturned()
    {
        await CommitAsync(Id(1), seed: 1);
        await File.WriteAllTextAsync(_layout.LatestFile, "../job/" + Id(1) + "\n");

        var invalid = new List<string>();
        var found = _store.FindLatestValid(verifyHashes: true, BufferSize, (id, _) => invalid.Add(id), CancellationToken.None);

        Assert.Equal(Id(1), found?.Id);
        Assert.Equal(["../job/" + Id(1)], invalid);
    }

    // Storage content is untrusted (design.md, "Trust boundary"): another pod, job, person or a broken
    // server wrote it. Each entry below must make its checkpoint "not valid" and resume fall back to an
    // older one: never hang, throw, read without bound or hand out a path outside the job directory.

    [Fact]
    public async Task FindLatestValid_LatestIsFifo_FallsBackWithoutBlocking()
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        File.Delete(_layout.LatestFile);
        Posix.MakeFifo(_layout.LatestFile);

        Assert.Equal(Id(2), (await FindBoundedAsync())?.Id);
    }

    [Fact]
    public async Task FindLatestValid_LatestIsDirectory_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        File.Delete(_layout.LatestFile);
        Directory.CreateDirectory(_layout.LatestFile);

        Assert.Equal(Id(1), (await FindBoundedAsync())?.Id);
    }

    [Fact]
    public async Task ReadLatestId_LatestOfHundredMiB_ReadsNoMoreThanItsCap()
    {
        await CommitAsync(Id(1), seed: 1);
        // Still starts with a valid id; the rest is a hole of zeros, so the test costs no disk.
        using (var stream = new FileStream(_layout.LatestFile, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(96L << 20);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        var latest = _store.ReadLatestId();
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Null(latest);
        Assert.InRange(allocated, 0, 1 << 20);
    }

    [Theory]
    [InlineData("fifo")]
    [InlineData("directory")]
    [InlineData("symlink")]
    public async Task FindLatestValid_ManifestIsNotARegularFile_FallsBackWithoutBlocking(string kind)
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        var manifest = ManifestPath(Id(2));
        var genuine = await File.ReadAllBytesAsync(manifest);
        File.Delete(manifest);
        switch (kind)
        {
            case "fifo":
                Posix.MakeFifo(manifest);
                break;
            case "directory":
                Directory.CreateDirectory(manifest);
                break;
            default:
                File.CreateSymbolicLink(manifest, TempDirectory.WriteFile(_temp.CreateDirectory("elsewhere"), "manifest.json", genuine));
                break;
        }

        Assert.Equal(Id(1), (await FindBoundedAsync())?.Id);
    }

    public static TheoryData<string, string> NullsInManifest => new()
    {
        { "\"files\": [", "\"files\": [null, " },
        { "\"ranks\": [", "\"ranks\": [null, " },
        { "\"metadata\": {}", "\"metadata\": {\"epoch\": null}" },
        { "\"metadata\": {}", "\"metadata\": null" },
        { "\"reason\": \"periodic\"", "\"reason\": null" },
        { "\"path\": \"", "\"path\": null, \"was\": \"" },
        { "\"xxh128\": \"", "\"xxh128\": null, \"was\": \"" },
    };

    [Theory]
    [MemberData(nameof(NullsInManifest))]
    public async Task FindLatestValid_ManifestWithNull_FallsBack(string genuine, string withNull)
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        var path = ManifestPath(Id(2));
        var json = await File.ReadAllTextAsync(path);
        Assert.Contains(genuine, json, StringComparison.Ordinal);
        await File.WriteAllTextAsync(path, json.Replace(genuine, withNull, StringComparison.Ordinal));

        Assert.Equal(Id(1), (await FindBoundedAsync())?.Id);
    }

    [Fact]
    public async Task FindLatestValid_ManifestLargerThanItsCap_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        // A valid manifest padded with whitespace past 16 MiB: without a cap it is read and accepted.
        var padding = new byte[17 << 20];
        padding.AsSpan().Fill((byte)' ');
        using (var stream = new FileStream(ManifestPath(Id(2)), FileMode.Append))
        {
            stream.Write(padding);
        }

        Assert.Equal(Id(1), (await FindBoundedAsync())?.Id);
    }

    [Theory]
    [InlineData("name-too-long")]
    [InlineData("path-too-long")]
    [InlineData("symlink-loop")]
    [InlineData("fifo")]
    [InlineData("directory")]
    public async Task FindLatestValid_ListedFileCannotBeRead_FallsBack(string kind)
    {
        await CommitAsync(Id(1), seed: 1);
        var latest = await CommitAsync(Id(2), seed: 2);
        var directory = _layout.CommittedDirectory(Id(2));
        var listed = kind switch
        {
            "name-too-long" => "rank0/" + new string('x', 300),
            "path-too-long" => string.Join('/', Enumerable.Repeat("d", 2100)) + "/model.bin",
            "symlink-loop" => "loop/model.bin",
            _ => "special.bin",
        };
        switch (kind)
        {
            case "symlink-loop":
                File.CreateSymbolicLink(Path.Combine(directory, "loop"), "loop");
                break;
            case "fifo":
                Posix.MakeFifo(Path.Combine(directory, listed));
                break;
            case "directory":
                Directory.CreateDirectory(Path.Combine(directory, listed));
                break;
        }

        await WriteManifestAsync(latest with { Files = [.. latest.Files, new ManifestFile(listed, 0, new string('0', 32))] });

        Assert.Equal(Id(1), (await FindBoundedAsync())?.Id);
    }

    [Fact]
    public async Task FindLatestValid_CheckpointDirectoryIsSymlinkOutOfTheJob_FallsBack()
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        // A complete, valid checkpoint, but outside the job directory: resume must never hand it out.
        var outside = Path.Combine(_temp.CreateDirectory("elsewhere"), Id(2));
        Directory.Move(_layout.CommittedDirectory(Id(2)), outside);
        Directory.CreateSymbolicLink(_layout.CommittedDirectory(Id(2)), outside);
        var invalid = new List<string>();

        var found = await FindBoundedAsync(onInvalid: (id, _) => invalid.Add(id));

        Assert.Equal(Id(1), found?.Id);
        Assert.Equal([Id(2)], invalid);
    }

    [Theory]
    [InlineData("directory")]
    [InlineData("file")]
    public async Task FindLatestValid_SymlinkInsideCheckpoint_FallsBack(string linked)
    {
        await CommitAsync(Id(1), seed: 1);
        await CommitAsync(Id(2), seed: 2);
        var directory = _layout.CommittedDirectory(Id(2));
        var inside = linked == "directory" ? Path.Combine(directory, "rank1") : Path.Combine(directory, "rank1", "model.bin");
        var outside = Path.Combine(_temp.CreateDirectory("elsewhere"), Path.GetFileName(inside));
        if (linked == "directory")
        {
            Directory.Move(inside, outside);
            Directory.CreateSymbolicLink(inside, outside);
        }
        else
        {
            File.Move(inside, outside);
            File.CreateSymbolicLink(inside, outside);
        }

        Assert.Equal(Id(1), (await FindBoundedAsync())?.Id);
    }

    [Fact]
    public async Task SweepLeftovers_PartialHoldsNamesThatAreNotUtf8_RemovesIt()
    {
        await CommitAsync(Id(1), seed: 1);
        var partial = Directory.CreateDirectory(_layout.PartialDirectory(Id(2))).FullName;
        Posix.CreateFileWithRawName(partial, [0xff, 0xfe, (byte)'.', (byte)'b']);
        var nested = Directory.CreateDirectory(Path.Combine(partial, "rank0")).FullName;
        Posix.CreateFileWithRawName(nested, [0x80]);

        var swept = _store.SweepLeftovers();

        Assert.Equal(1, swept);
        Assert.False(Directory.Exists(partial));
        Assert.Equal(Id(1), _store.FindLatestValid(verifyHashes: true, BufferSize, null, CancellationToken.None)?.Id);
    }

    [Fact]
    public async Task SweepLeftovers_OneLeftoverUndeletable_SweepsTheOthers()
    {
        await CommitAsync(Id(1), seed: 1);
        var stuck = TempDirectory.WriteFile(_layout.DeletingDirectory(Id(0)), "rank0/model.bin", [1]);
        var partial = Path.GetDirectoryName(TempDirectory.WriteFile(_layout.PartialDirectory(Id(2)), "model.bin", [2]))!;
        // Not even root may delete an immutable file: what an undeletable subtree looks like here.
        Chattr("+i", stuck);
        try
        {
            var swept = _store.SweepLeftovers();

            Assert.Equal(1, swept);
            Assert.False(Directory.Exists(partial));
            Assert.True(File.Exists(stuck));
        }
        finally
        {
            Chattr("-i", stuck);
        }
    }

    [Fact]
    public async Task SweepLeftovers_LeftoverIsSymlink_RemovesTheLinkNotItsTarget()
    {
        await CommitAsync(Id(1), seed: 1);
        var target = TempDirectory.WriteFile(_temp.CreateDirectory("elsewhere"), "precious.bin", [1]);
        Directory.CreateSymbolicLink(_layout.PartialDirectory(Id(2)), Path.GetDirectoryName(target)!);

        Assert.Equal(1, _store.SweepLeftovers());

        Assert.False(Path.Exists(_layout.PartialDirectory(Id(2))));
        Assert.True(File.Exists(target));
    }

    [Fact]
    public async Task SweepLeftovers_LatestTmpIsDirectory_RemovesIt()
    {
        await CommitAsync(Id(1), seed: 1);
        TempDirectory.WriteFile(_layout.LatestTempFile, "junk", [1]);

        _store.SweepLeftovers();

        Assert.False(Path.Exists(_layout.LatestTempFile));
        await CommitAsync(Id(2), seed: 2);
        Assert.Equal(Id(2), _store.ReadLatestId());
    }

    private static string Id(int n) => $"2026010{n}T000000000Z-periodic";

    private string ManifestPath(string id) => Path.Combine(_layout.CommittedDirectory(id), "manifest.json");

    private Task WriteManifestAsync(CheckpointManifest manifest) => File.WriteAllBytesAsync(ManifestPath(manifest.Id), manifest.ToUtf8Json());

    private Task<CommittedCheckpoint?> FindBoundedAsync(bool verifyHashes = true, Action<string, string>? onInvalid = null) =>
        Task.Run(() => _store.FindLatestValid(verifyHashes, BufferSize, onInvalid, CancellationToken.None)).WaitAsync(NeverBlocks);

    private static void Chattr(string flag, string path)
    {
        using var chattr = Process.Start("chattr", [flag, path]);
        chattr.WaitForExit();
        Assert.True(chattr.ExitCode == 0, $"chattr {flag} {path} failed: the filesystem of the temp directory must support immutable files");
    }

    private List<string> CommittedOnDisk() => [.. _layout.CommittedCandidates().Order(StringComparer.Ordinal)];

    private async Task<(string Partial, IReadOnlyList<ManifestFile> Entries)> CopyToPartialAsync(string id, int seed)
    {
        var staging = _temp.CreateStaging(id);
        TempDirectory.WriteFile(staging.Path, "rank0/model.bin", TempDirectory.RandomBytes(3000 + seed, seed));
        TempDirectory.WriteFile(staging.Path, "rank1/model.bin", TempDirectory.RandomBytes(BufferSize + seed, seed + 100));
        var staged = StagingValidator.Validate(staging, ["rank0/model.bin", "rank1/model.bin"], NoneReported);
        var partial = _store.CreatePartialDirectory(id);
        var entries = (await _copier.CopyAndVerifyAsync(staged, partial, null, CancellationToken.None)).Files;
        return (partial, entries);
    }

    private async Task<CheckpointManifest> CommitAsync(string id, int seed)
    {
        var (_, entries) = await CopyToPartialAsync(id, seed);
        var manifest = NewManifest(id, entries);
        _store.Commit(manifest);
        return manifest;
    }

    private static CheckpointManifest NewManifest(string id, IReadOnlyList<ManifestFile> entries) => new()
    {
        FormatVersion = CheckpointManifest.CurrentFormatVersion,
        Id = id,
        Step = 42,
        Created = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero),
        Reason = "periodic",
        Files = entries,
        Ranks = [new ManifestRank(0, 42, new Dictionary<string, string>()), new ManifestRank(1, 42, new Dictionary<string, string>())],
        Timings = new ManifestTimings(30, 0, 1, 2, 3),
    };
}
