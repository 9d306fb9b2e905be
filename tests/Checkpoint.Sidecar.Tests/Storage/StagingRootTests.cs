using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests.Storage;

public sealed class StagingRootTests : IDisposable
{
    private const string Id = "20261129T024500123Z-preemption-5c0e1f2a9b3d4e67";

    private readonly TempDirectory _temp = new();
    private readonly string _rootPath;
    private readonly StagingRoot _root;

    public StagingRootTests()
    {
        _rootPath = _temp.CreateDirectory("staging");
        _root = new StagingRoot(_rootPath, NullLogger<StagingRoot>.Instance);
    }

    public void Dispose()
    {
        _root.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public void CreateCheckpointDirectory_NewId_CreatesItBeneathTheRoot()
    {
        using var staging = _root.CreateCheckpointDirectory(Id);

        Assert.Equal(Path.Combine(_rootPath, Id), staging.Path);
        Assert.True(Directory.Exists(staging.Path));
        Assert.Null(new DirectoryInfo(staging.Path).LinkTarget);
    }

    [Fact]
    public void CreateCheckpointDirectory_NameTakenByDanglingSymlink_ThrowsWithoutFollowingIt()
    {
        var target = _temp.Combine("squatter-target");
        Directory.CreateSymbolicLink(Path.Combine(_rootPath, Id), target);

        var e = Assert.Throws<StagingUnavailableException>(() => _root.CreateCheckpointDirectory(Id));

        Assert.Contains($"'{Path.Combine(_rootPath, Id)}'", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(target));
    }

    [Fact]
    public void CreateCheckpointDirectory_RootRemoved_ThrowsReadableCause()
    {
        Directory.Delete(_rootPath);
        File.WriteAllText(_rootPath, "a regular file where the staging volume was");

        var e = Assert.Throws<StagingUnavailableException>(() => _root.CreateCheckpointDirectory(Id));

        Assert.Equal(
            $"could not create the staging directory '{Path.Combine(_rootPath, Id)}': the file or a directory on its path does not exist (ENOENT)",
            e.Message);
        Assert.Equal(2, e.Errno);
    }

    [Fact]
    public async Task Remove_TreeWithNamesThatAreNotUtf8_RemovesIt()
    {
        var staging = _root.CreateCheckpointDirectory(Id);
        TempDirectory.WriteFile(staging.Path, "rank-0/model.bin", new byte[10]);
        await TempDirectory.WriteFilesNamedInLatin1Async(Path.Combine(staging.Path, "rank-0"));

        _root.Remove(staging);

        Assert.False(Path.Exists(staging.Path));
    }

    [Fact]
    public void Remove_DirectorySwappedForSymlink_RemovesTheLinkNotWhatItPointsAt()
    {
        var staging = _root.CreateCheckpointDirectory(Id);
        var precious = TempDirectory.WriteFile(_temp.CreateDirectory("precious"), "data.bin", new byte[10]);
        Directory.Delete(staging.Path);
        Directory.CreateSymbolicLink(staging.Path, Path.GetDirectoryName(precious)!);

        _root.Remove(staging);

        Assert.False(Path.Exists(staging.Path));
        Assert.True(File.Exists(precious));
    }

    [Fact]
    public async Task SweepLeftovers_CheckpointDirectoriesOfAKilledSidecar_RemovesOnlyThem()
    {
        string[] leftovers = [Id, "20261129T024500123Z-periodic", "20261129T024500123Z-manual-002"];
        foreach (var leftover in leftovers)
        {
            TempDirectory.WriteFile(Path.Combine(_rootPath, leftover), "rank-0/model.bin", new byte[10]);
        }

        await TempDirectory.WriteFilesNamedInLatin1Async(Path.Combine(_rootPath, Id));
        var notes = TempDirectory.WriteFile(_rootPath, "notes/todo.txt", new byte[1]);
        var fileNamedLikeAnId = TempDirectory.WriteFile(_rootPath, "20261129T024500124Z-periodic", new byte[1]);
        var outside = TempDirectory.WriteFile(_temp.CreateDirectory("outside"), "data.bin", new byte[1]);
        var linkNamedLikeAnId = Path.Combine(_rootPath, "20261129T024500125Z-periodic");
        Directory.CreateSymbolicLink(linkNamedLikeAnId, Path.GetDirectoryName(outside)!);

        var swept = _root.SweepLeftovers();

        Assert.Equal(leftovers.Length, swept);
        Assert.All(leftovers, leftover => Assert.False(Path.Exists(Path.Combine(_rootPath, leftover))));
        Assert.True(File.Exists(notes));
        Assert.True(File.Exists(fileNamedLikeAnId));
        Assert.NotNull(new DirectoryInfo(linkNamedLikeAnId).LinkTarget);
        Assert.True(File.Exists(outside));
    }
}
