using System.Diagnostics;
using System.IO.Hashing;
using Checkpoint.Sidecar.Storage;
using Checkpoint.TestSupport;

namespace Checkpoint.Sidecar.Tests.Storage;

public sealed class CheckpointCopierTests : IDisposable
{
    private const int BufferSize = 64 * 1024;
    private static readonly IReadOnlySet<string> NoneReported = new HashSet<string>(StringComparer.Ordinal);

    private readonly TempDirectory _temp = new();
    private readonly StagingDirectory _stagingDirectory;
    private readonly string _staging;
    private readonly string _partial;
    private readonly CheckpointCopier _copier = new(parallelism: 3, bufferSize: BufferSize, TimeProvider.System);

    public CheckpointCopierTests()
    {
        _stagingDirectory = _temp.CreateStaging();
        _staging = _stagingDirectory.Path;
        _partial = _temp.CreateDirectory("storage", "id.partial");
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task CopyAsync_FilesOfEverySize_CopiesBytesIdenticallyWithIndependentHashes()
    {
        var contents = new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            ["empty.bin"] = [],
            ["small.bin"] = TempDirectory.RandomBytes(100, seed: 1),
            ["rank0/exact-buffer.bin"] = TempDirectory.RandomBytes(BufferSize, seed: 2),
            ["rank0/nested/large.bin"] = TempDirectory.RandomBytes((3 * BufferSize) + 17, seed: 3),
        };
        foreach (var (path, bytes) in contents)
        {
            TempDirectory.WriteFile(_staging, path, bytes);
        }

        var staged = StagingValidator.Validate(_stagingDirectory, [.. contents.Keys], NoneReported);
        long reportedBytes = 0;

        var entries = (await _copier.CopyAndVerifyAsync(staged, _partial, n => Interlocked.Add(ref reportedBytes, n), CancellationToken.None)).Files;

        Assert.Equal(contents.Keys, entries.Select(e => e.Path));
        foreach (var entry in entries)
        {
            var expected = contents[entry.Path];
            var copy = await File.ReadAllBytesAsync(Path.Combine(_partial, entry.Path));
            Assert.Equal(expected, copy);
            Assert.Equal(expected.Length, entry.Size);
            Assert.Equal(Convert.ToHexStringLower(XxHash128.Hash(expected)), entry.Xxh128);
        }

        Assert.Equal(contents.Values.Sum(b => (long)b.Length), reportedBytes);
        Assert.Equal("99aa06d3014798d86001c324468d497f", entries[0].Xxh128); // XXH128 of nothing
    }

    [Fact]
    public async Task CopyAsync_Hash_MatchesXxhsumWhenInstalled()
    {
        var bytes = TempDirectory.RandomBytes((2 * BufferSize) + 5, seed: 4);
        TempDirectory.WriteFile(_staging, "model.bin", bytes);
        var staged = StagingValidator.Validate(_stagingDirectory, ["model.bin"], NoneReported);

        var entry = Assert.Single((await _copier.CopyAndVerifyAsync(staged, _partial, null, CancellationToken.None)).Files);

        var xxhsum = await RunXxhsumAsync(Path.Combine(_partial, "model.bin"));
        if (xxhsum is not null)
        {
            Assert.Equal(xxhsum, entry.Xxh128);
        }

        Assert.Equal(Convert.ToHexStringLower(XxHash128.Hash(bytes)), entry.Xxh128);
    }

    [Fact]
    public async Task VerifyAsync_UntouchedCopy_Succeeds()
    {
        TempDirectory.WriteFile(_staging, "model.bin", TempDirectory.RandomBytes(BufferSize + 1, seed: 5));
        var entries = await CopyAsync("model.bin");
        long verifiedBytes = 0;

        await _copier.VerifyAsync(entries, _partial, n => verifiedBytes += n, CancellationToken.None);

        Assert.Equal(BufferSize + 1, verifiedBytes);
    }

    [Fact]
    public async Task VerifyAsync_BitFlippedInCopy_ThrowsVerificationFailed()
    {
        TempDirectory.WriteFile(_staging, "a.bin", TempDirectory.RandomBytes(1000, seed: 6));
        TempDirectory.WriteFile(_staging, "rank1/b.bin", TempDirectory.RandomBytes((2 * BufferSize) + 3, seed: 7));
        var entries = await CopyAsync("a.bin", "rank1/b.bin");
        FileDamage.FlipBit(Path.Combine(_partial, "rank1/b.bin"), BufferSize + 10);

        var e = await Assert.ThrowsAsync<VerificationFailedException>(
            () => _copier.VerifyAsync(entries, _partial, null, CancellationToken.None));

        Assert.Equal("rank1/b.bin", e.Path);
        Assert.Contains(entries[1].Xxh128, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CopyAsync_StagedFileGrewAfterValidation_ThrowsIOException()
    {
        var source = TempDirectory.WriteFile(_staging, "model.bin", TempDirectory.RandomBytes(1000, seed: 8));
        var staged = StagingValidator.Validate(_stagingDirectory, ["model.bin"], NoneReported);
        await File.AppendAllTextAsync(source, "more");

        var e = await Assert.ThrowsAsync<StorageException>(() => _copier.CopyAndVerifyAsync(staged, _partial, null, CancellationToken.None));

        Assert.Contains("model.bin", e.Message, StringComparison.Ordinal);
        Assert.Contains("changed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CopyAsync_StagedFileShrankAfterValidation_ThrowsIOException()
    {
        var source = TempDirectory.WriteFile(_staging, "model.bin", TempDirectory.RandomBytes(1000, seed: 9));
        var staged = StagingValidator.Validate(_stagingDirectory, ["model.bin"], NoneReported);
        await File.WriteAllBytesAsync(source, new byte[10]);

        var e = await Assert.ThrowsAsync<StorageException>(() => _copier.CopyAndVerifyAsync(staged, _partial, null, CancellationToken.None));

        Assert.Contains("model.bin", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CopyAsync_StagedFileSwappedForSymlinkAfterValidation_DoesNotCopyOutsideFile()
    {
        var secret = TempDirectory.RandomBytes(1000, seed: 10);
        var outside = TempDirectory.WriteFile(_temp.CreateDirectory("outside"), "secret.bin", secret);
        var source = TempDirectory.WriteFile(_staging, "model.bin", TempDirectory.RandomBytes(1000, seed: 11));
        var staged = StagingValidator.Validate(_stagingDirectory, ["model.bin"], NoneReported);
        File.Delete(source);
        File.CreateSymbolicLink(source, outside);

        var error = await Record.ExceptionAsync(() => _copier.CopyAndVerifyAsync(staged, _partial, null, CancellationToken.None));

        var copied = error is null ? await File.ReadAllBytesAsync(Path.Combine(_partial, "model.bin")) : [];
        Assert.True(error is IOException || !copied.SequenceEqual(secret), "the file outside staging was copied into the checkpoint");
    }

    [Fact]
    public async Task CopyAsync_StagedFileRewrittenInPlaceDuringCopy_ThrowsNamingFile()
    {
        // Same size, so only the file's status can tell: copied as it was, its hash would be the torn
        // bytes' hash, and read-back and resume checks would pass.
        var source = TempDirectory.WriteFile(_staging, "model.bin", TempDirectory.RandomBytes(3 * BufferSize, seed: 12));
        // A modification time well in the past: a rewrite is then told apart on any timestamp granularity.
        File.SetLastWriteTimeUtc(source, DateTime.UtcNow.AddHours(-1));
        var staged = StagingValidator.Validate(_stagingDirectory, ["model.bin"], NoneReported);
        var rewritten = 0;
        void RewriteSecondChunkOnce(long bytes)
        {
            // Called on the copying thread after the first chunk is copied: the race, made deterministic.
            if (Interlocked.Exchange(ref rewritten, 1) == 0)
            {
                using var stream = new FileStream(source, FileMode.Open, FileAccess.Write);
                stream.Position = BufferSize;
                stream.Write(TempDirectory.RandomBytes(BufferSize, seed: 13));
            }
        }

        var e = await Assert.ThrowsAsync<StorageException>(() => _copier.CopyAndVerifyAsync(staged, _partial, RewriteSecondChunkOnce, CancellationToken.None));

        Assert.Equal(1, rewritten);
        Assert.Contains("'model.bin'", e.Message, StringComparison.Ordinal);
        Assert.Contains("changed while it was copied", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CopyAsync_StagingDirectorySwappedForSymlinkAfterValidation_CopiesWhatWasStagedNotTheLinkTarget()
    {
        var staged = TempDirectory.RandomBytes(1000, seed: 14);
        var secret = TempDirectory.RandomBytes(1000, seed: 15);
        TempDirectory.WriteFile(_staging, "rank0/model.bin", staged);
        TempDirectory.WriteFile(_temp.CreateDirectory("outside"), "rank0/model.bin", secret);
        var files = StagingValidator.Validate(_stagingDirectory, ["rank0/model.bin"], NoneReported);
        Directory.Move(_staging, _temp.Combine("moved-away"));
        Directory.CreateSymbolicLink(_staging, _temp.Combine("outside"));

        var entry = Assert.Single((await _copier.CopyAndVerifyAsync(files, _partial, null, CancellationToken.None)).Files);

        Assert.Equal(staged, await File.ReadAllBytesAsync(Path.Combine(_partial, "rank0/model.bin")));
        Assert.Equal(Convert.ToHexStringLower(XxHash128.Hash(staged)), entry.Xxh128);
    }

    [Fact]
    public async Task CopyAsync_Cancelled_Throws()
    {
        TempDirectory.WriteFile(_staging, "model.bin", new byte[10]);
        var staged = StagingValidator.Validate(_stagingDirectory, ["model.bin"], NoneReported);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => _copier.CopyAndVerifyAsync(staged, _partial, null, new CancellationToken(canceled: true)));
    }

    private async Task<IReadOnlyList<ManifestFile>> CopyAsync(params string[] paths) =>
        (await _copier.CopyAndVerifyAsync(StagingValidator.Validate(_stagingDirectory, paths, NoneReported), _partial, null, CancellationToken.None)).Files;

    /// <summary>The hash `xxhsum -H2` prints, or null when xxhsum is not installed.</summary>
    private static async Task<string?> RunXxhsumAsync(string path)
    {
        Process? process;
        try
        {
            process = Process.Start(new ProcessStartInfo("xxhsum", ["-H2", path])
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
            });
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }

        using (process)
        {
            Assert.NotNull(process);
            var output = await process.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, process.ExitCode);
            return output.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
        }
    }
}
