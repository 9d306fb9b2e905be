using System.Diagnostics;
using Checkpoint.Sidecar.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Checkpoint.Sidecar.Tests.Storage;

public sealed class StagingValidatorTests : IDisposable
{
    private static readonly IReadOnlySet<string> NoneReported = new HashSet<string>(StringComparer.Ordinal);

    private readonly TempDirectory _temp = new();
    private readonly StagingDirectory _stagingDirectory;
    private readonly string _staging;
    private readonly string _outside;

    public StagingValidatorTests()
    {
        _stagingDirectory = _temp.CreateStaging();
        _staging = _stagingDirectory.Path;
        _outside = _temp.CreateDirectory("outside");
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Validate_NestedFiles_ReturnsNormalisedRelativePathsAndSizes()
    {
        TempDirectory.WriteFile(_staging, "model.bin", new byte[10]);
        TempDirectory.WriteFile(_staging, "rank0/optim/state.bin", new byte[2048]);
        TempDirectory.WriteFile(_staging, "rank0/empty.bin", []);

        var files = StagingValidator.Validate(
            _stagingDirectory, ["./model.bin", "rank0//optim/./state.bin", "rank0/empty.bin/"], NoneReported);

        Assert.Equal(["model.bin", "rank0/optim/state.bin", "rank0/empty.bin"], files.Select(f => f.RelativePath));
        Assert.Equal([10L, 2048L, 0L], files.Select(f => f.Size));
        Assert.Equal(
            [Path.Combine(_staging, "model.bin"), Path.Combine(_staging, "rank0/optim/state.bin"), Path.Combine(_staging, "rank0/empty.bin")],
            files.Select(f => f.SourcePath));
    }

    [Fact]
    public void Validate_AbsolutePath_ThrowsNamingPath()
    {
        var absolute = TempDirectory.WriteFile(_staging, "model.bin", new byte[1]);

        AssertRejected(absolute, "absolute");
    }

    [Theory]
    [InlineData("../outside/secret.bin")]
    [InlineData("rank0/../../outside/secret.bin")]
    [InlineData("rank0/..")]
    public void Validate_DotDotSegment_ThrowsNamingPath(string reported)
    {
        TempDirectory.WriteFile(_outside, "secret.bin", new byte[1]);
        Directory.CreateDirectory(Path.Combine(_staging, "rank0"));

        AssertRejected(reported, "'..'");
    }

    [Fact]
    public void Validate_SymlinkFileOutsideStaging_ThrowsNamingPath()
    {
        var secret = TempDirectory.WriteFile(_outside, "secret.bin", new byte[5]);
        File.CreateSymbolicLink(Path.Combine(_staging, "model.bin"), secret);

        AssertRejected("model.bin", "symlink");
    }

    [Fact]
    public void Validate_RelativeSymlinkFileOutsideStaging_ThrowsNamingPath()
    {
        TempDirectory.WriteFile(_outside, "secret.bin", new byte[5]);
        Directory.CreateDirectory(Path.Combine(_staging, "rank0"));
        File.CreateSymbolicLink(Path.Combine(_staging, "rank0", "model.bin"), "../../outside/secret.bin");

        AssertRejected("rank0/model.bin", "symlink");
    }

    [Fact]
    public void Validate_SymlinkedDirectoryOutsideStaging_ThrowsNamingPath()
    {
        TempDirectory.WriteFile(_outside, "secret.bin", new byte[5]);
        Directory.CreateSymbolicLink(Path.Combine(_staging, "rank0"), _outside);

        AssertRejected("rank0/secret.bin", "symlink");
    }

    [Fact]
    public void Validate_SymlinkedDirectoryHigherUpOutsideStaging_ThrowsNamingPath()
    {
        TempDirectory.WriteFile(_outside, "deep/secret.bin", new byte[5]);
        Directory.CreateSymbolicLink(Path.Combine(_staging, "rank0"), _outside);

        AssertRejected("rank0/deep/secret.bin", "symlink");
    }

    [Fact]
    public void Validate_SymlinkChainEndingOutsideStaging_ThrowsNamingPath()
    {
        var secret = TempDirectory.WriteFile(_outside, "secret.bin", new byte[5]);
        File.CreateSymbolicLink(Path.Combine(_staging, "hop.bin"), secret);
        File.CreateSymbolicLink(Path.Combine(_staging, "model.bin"), "hop.bin");

        AssertRejected("model.bin", "symlink");
    }

    [Fact]
    public void Validate_SymlinkThroughSymlinkedDirectoryOutside_ThrowsNamingPath()
    {
        TempDirectory.WriteFile(_outside, "secret.bin", new byte[5]);
        Directory.CreateSymbolicLink(Path.Combine(_staging, "sub"), _outside);
        File.CreateSymbolicLink(Path.Combine(_staging, "model.bin"), "sub/secret.bin");

        AssertRejected("model.bin", "symlink");
    }

    [Fact]
    public void Validate_SymlinkLoop_ThrowsNamingPath()
    {
        File.CreateSymbolicLink(Path.Combine(_staging, "a.bin"), "b.bin");
        File.CreateSymbolicLink(Path.Combine(_staging, "b.bin"), "a.bin");

        var e = Assert.Throws<InvalidReportException>(() => StagingValidator.Validate(_stagingDirectory, ["a.bin"], NoneReported));

        Assert.Equal("a.bin", e.Path);
    }

    [Fact]
    public void Validate_SymlinkInsideStaging_ThrowsNamingPath()
    {
        // Even a link that stays inside: it is resolved again at copy time, when it may point elsewhere.
        TempDirectory.WriteFile(_staging, "data/real.bin", new byte[7]);
        File.CreateSymbolicLink(Path.Combine(_staging, "model.bin"), "data/real.bin");

        AssertRejected("model.bin", "symlink");
    }

    [Fact]
    public void Validate_StagingRootConfiguredThroughSymlink_AcceptsFilesInside()
    {
        // The root is the operator's setting, not the trainer's: a link there is followed once, at start.
        var link = _temp.Combine("staging-link");
        Directory.CreateSymbolicLink(link, _temp.CreateDirectory("real-staging"));
        using var root = new StagingRoot(link, NullLogger<StagingRoot>.Instance);
        using var staging = root.CreateCheckpointDirectory(TempDirectory.StagingId);
        TempDirectory.WriteFile(staging.Path, "model.bin", new byte[3]);

        var file = Assert.Single(StagingValidator.Validate(staging, ["model.bin"], NoneReported));

        Assert.Equal(3, file.Size);
        Assert.True(File.Exists(_temp.Combine("real-staging", TempDirectory.StagingId, "model.bin")));
    }

    [Fact]
    public void Validate_StagingDirectorySwappedForSymlink_ThrowsNamingStagingDirectory()
    {
        // The trainer removes the empty directory it was given and links it to a directory holding a secret.
        TempDirectory.WriteFile(_outside, "rank0/model.bin", new byte[5]);
        Directory.Delete(_staging);
        Directory.CreateSymbolicLink(_staging, _outside);

        var e = Assert.Throws<InvalidReportException>(() => StagingValidator.Validate(_stagingDirectory, ["rank0/model.bin"], NoneReported));

        Assert.Equal(_staging, e.Path);
        Assert.Contains($"staging directory '{_staging}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("symlink", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_StagingDirectoryReplacedByAnotherDirectory_ThrowsNamingStagingDirectory()
    {
        Directory.Delete(_staging);
        TempDirectory.WriteFile(_staging, "model.bin", new byte[5]);

        var e = Assert.Throws<InvalidReportException>(() => StagingValidator.Validate(_stagingDirectory, ["model.bin"], NoneReported));

        Assert.Equal(_staging, e.Path);
        Assert.Contains("replaced", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_MissingFile_ThrowsNamingPath()
    {
        AssertRejected("rank0/missing.bin", "does not exist");
    }

    [Fact]
    public void Validate_Directory_ThrowsNamingPath()
    {
        TempDirectory.WriteFile(_staging, "rank0/model.bin", new byte[1]);

        AssertRejected("rank0", "directory");
    }

    [Fact]
    public async Task Validate_Fifo_ThrowsNamingPath()
    {
        await MakeFifoAsync(Path.Combine(_staging, "pipe"));

        AssertRejected("pipe", "not a regular file");
    }

    [Fact]
    public async Task Validate_SymlinkToFifoInsideStaging_ThrowsNamingPath()
    {
        await MakeFifoAsync(Path.Combine(_staging, "pipe"));
        File.CreateSymbolicLink(Path.Combine(_staging, "model.bin"), "pipe");

        AssertRejected("model.bin", "symlink");
    }

    [Fact]
    public void Validate_DuplicateWithinReport_ThrowsNamingPath()
    {
        TempDirectory.WriteFile(_staging, "rank0/model.bin", new byte[1]);

        var e = Assert.Throws<InvalidReportException>(
            () => StagingValidator.Validate(_stagingDirectory, ["rank0/model.bin", "rank0//./model.bin"], NoneReported));

        Assert.Equal("rank0//./model.bin", e.Path);
        Assert.Contains("more than once", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_DuplicateAcrossRanks_ThrowsNamingPath()
    {
        TempDirectory.WriteFile(_staging, "shared/model.bin", new byte[1]);
        var alreadyReported = new HashSet<string>(["shared/model.bin"], StringComparer.Ordinal);

        var e = Assert.Throws<InvalidReportException>(
            () => StagingValidator.Validate(_stagingDirectory, ["./shared/model.bin"], alreadyReported));

        Assert.Equal("./shared/model.bin", e.Path);
        Assert.Contains("more than once", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_EmptyList_Throws()
    {
        var e = Assert.Throws<InvalidReportException>(() => StagingValidator.Validate(_stagingDirectory, [], NoneReported));

        Assert.Equal("", e.Path);
        Assert.Contains("no files", e.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("manifest.json")]
    [InlineData("./manifest.json")]
    public void Validate_ManifestAtTopLevel_ThrowsNamingPath(string reported)
    {
        TempDirectory.WriteFile(_staging, "manifest.json", "{}"u8.ToArray());

        AssertRejected(reported, "reserved");
    }

    [Fact]
    public void Validate_ManifestNameInSubdirectory_IsAccepted()
    {
        TempDirectory.WriteFile(_staging, "rank0/manifest.json", "{}"u8.ToArray());

        var file = Assert.Single(StagingValidator.Validate(_stagingDirectory, ["rank0/manifest.json"], NoneReported));

        Assert.Equal("rank0/manifest.json", file.RelativePath);
    }

    [Fact]
    public void Validate_BadFileAfterGoodOnes_NamesTheBadOne()
    {
        TempDirectory.WriteFile(_staging, "a.bin", new byte[1]);

        AssertRejected("missing.bin", "does not exist", "a.bin");
    }

    private void AssertRejected(string reported, string reasonContains, params string[] goodBefore)
    {
        var e = Assert.Throws<InvalidReportException>(
            () => StagingValidator.Validate(_stagingDirectory, [.. goodBefore, reported], NoneReported));

        Assert.Equal(reported, e.Path);
        Assert.Contains(reported, e.Message, StringComparison.Ordinal);
        Assert.Contains(reasonContains, e.Reason, StringComparison.Ordinal);
    }

    private static async Task MakeFifoAsync(string path)
    {
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("mkfifo did not start");
        await mkfifo.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, mkfifo.ExitCode);
    }
}
