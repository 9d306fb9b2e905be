using System.Diagnostics;
using System.IO.Hashing;
using Checkpoint.Sidecar.Storage;
using Checkpoint.TestSupport;

namespace Checkpoint.Sidecar.Tests.Storage;

/// <summary>
/// The copy engine: ranges of one file written by several workers at once, O_DIRECT with a buffered
/// fallback per file, hashing in file order, read-back on the budget's word.
/// </summary>
public sealed class CopyEngineTests : IDisposable
{
    /// <summary>The chunk (range) size: the buffer size, already a multiple of the O_DIRECT alignment.</summary>
    private const int Chunk = 64 * 1024;
    private static readonly IReadOnlySet<string> NoneReported = new HashSet<string>(StringComparer.Ordinal);

    private readonly TempDirectory _temp = new();
    private readonly StagingDirectory _stagingDirectory;
    private readonly string _partial;
    private readonly CheckpointCopier _copier = new(parallelism: 3, bufferSize: Chunk, TimeProvider.System);

    public CopyEngineTests()
    {
        _stagingDirectory = _temp.CreateStaging();
        _partial = _temp.CreateDirectory("storage", "id.partial");
    }

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4095)]
    [InlineData(4096)]
    [InlineData(4097)]
    [InlineData(Chunk - 1)]
    [InlineData(Chunk)]
    [InlineData(Chunk + 1)]
    [InlineData((5 * Chunk) + 4097)]
    public async Task Copy_AnySize_CopiesBytesAndHashesAsXxhsum(int size)
    {
        var bytes = TempDirectory.RandomBytes(size, seed: size);
        TempDirectory.WriteFile(_stagingDirectory.Path, "model.bin", bytes);

        var entry = Assert.Single((await CopyAsync(_partial, null, "model.bin")).Files);

        var copy = Path.Combine(_partial, "model.bin");
        Assert.Equal(bytes, await File.ReadAllBytesAsync(copy));
        Assert.Equal(Convert.ToHexStringLower(XxHash128.Hash(bytes)), entry.Xxh128);
        Assert.Equal(await XxhsumAsync(copy), entry.Xxh128);
        Assert.Equal(ManifestFile.ReadBack, entry.Verification);
    }

    [Fact]
    public async Task Copy_ToTmpfs_CopiesCorrectly()
    {
        var shm = Path.Combine("/dev/shm", "sidecar-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(shm);
        try
        {
            var bytes = TempDirectory.RandomBytes((3 * Chunk) + 11, seed: 20);
            TempDirectory.WriteFile(_stagingDirectory.Path, "rank0/model.bin", bytes);

            var entry = Assert.Single((await CopyAsync(shm, null, "rank0/model.bin")).Files);

            Assert.Equal(bytes, await File.ReadAllBytesAsync(Path.Combine(shm, "rank0/model.bin")));
            Assert.Equal(Convert.ToHexStringLower(XxHash128.Hash(bytes)), entry.Xxh128);
        }
        finally
        {
            Directory.Delete(shm, recursive: true);
        }
    }

    [Fact]
    public async Task Copy_ToFuseThatRefusesDirectWrites_FallsBackAndCopiesCorrectly()
    {
        // faultfs (fusepy) accepts O_DIRECT at open and fails the first direct write with EINVAL.
        await using var fuse = await FuseMount.MountAsync(_temp.Path);
        var partial = Directory.CreateDirectory(Path.Combine(fuse.MountPoint, "id.partial")).FullName;
        var big = TempDirectory.RandomBytes((4 * Chunk) + 123, seed: 21);
        var small = TempDirectory.RandomBytes(700, seed: 22);
        TempDirectory.WriteFile(_stagingDirectory.Path, "big.bin", big);
        TempDirectory.WriteFile(_stagingDirectory.Path, "small.bin", small);

        var entries = (await CopyAsync(partial, null, "big.bin", "small.bin")).Files;

        Assert.Equal(big, await File.ReadAllBytesAsync(Path.Combine(fuse.Backing, "id.partial", "big.bin")));
        Assert.Equal(small, await File.ReadAllBytesAsync(Path.Combine(fuse.Backing, "id.partial", "small.bin")));
        Assert.Equal([Convert.ToHexStringLower(XxHash128.Hash(big)), Convert.ToHexStringLower(XxHash128.Hash(small))], entries.Select(e => e.Xxh128));
        Assert.All(entries, e => Assert.Equal(ManifestFile.ReadBack, e.Verification));
    }

    [Fact]
    public async Task Copy_BitFlippedOnStorageInOneRange_FailsVerificationNamingFile()
    {
        await using var fuse = await FuseMount.MountAsync(_temp.Path);
        var partial = Directory.CreateDirectory(Path.Combine(fuse.MountPoint, "id.partial")).FullName;
        TempDirectory.WriteFile(_stagingDirectory.Path, "rank1/big.bin", TempDirectory.RandomBytes((4 * Chunk) + 5, seed: 23));
        TempDirectory.WriteFile(_stagingDirectory.Path, "small.bin", TempDirectory.RandomBytes(100, seed: 24));
        fuse.SetRule($$"""{"name": "bad-disk", "op": "write", "path_glob": "*big.bin", "action": "flip_bit", "offset": {{(2 * Chunk) + 10}}, "once": true}""");

        var e = await Assert.ThrowsAsync<VerificationFailedException>(() => CopyAsync(partial, null, "rank1/big.bin", "small.bin"));

        Assert.Equal("rank1/big.bin", e.Path);
        Assert.Contains("'rank1/big.bin'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Copy_BitFlippedOnLocalDiskBeforeDirectReadBack_FailsVerification()
    {
        TempDirectory.WriteFile(_stagingDirectory.Path, "big.bin", TempDirectory.RandomBytes((3 * Chunk) + 1, seed: 25));
        var budget = new RecordingBudget(readBack: true, (copied, path) => FileDamage.FlipBit(Path.Combine(_partial, copied.Path), Chunk + 3));

        var e = await Assert.ThrowsAsync<VerificationFailedException>(
            () => CopyAsync(_partial, new CopyPolicy(CopyPace.FullSpeed(), budget), "big.bin"));

        Assert.Equal("big.bin", e.Path);
    }

    [Fact]
    public async Task Copy_IoErrorMidRange_NamesFileAndWhatWasDone()
    {
        await using var fuse = await FuseMount.MountAsync(_temp.Path);
        var partial = Directory.CreateDirectory(Path.Combine(fuse.MountPoint, "id.partial")).FullName;
        TempDirectory.WriteFile(_stagingDirectory.Path, "big.bin", TempDirectory.RandomBytes(4 * Chunk, seed: 26));
        fuse.SetRule($$"""{"name": "eio", "op": "write", "path_glob": "*big.bin", "action": "eio", "offset": {{(2 * Chunk) + 100}}, "once": true}""");

        var e = await Assert.ThrowsAsync<StorageException>(() => CopyAsync(partial, null, "big.bin"));

        Assert.StartsWith("Writing 'big.bin' to the checkpoint storage failed", e.Message, StringComparison.Ordinal);
        Assert.Equal(5, e.Errno); // EIO
    }

    [Fact]
    public async Task Copy_Cancelled_StopsEveryWorker()
    {
        TempDirectory.WriteFile(_stagingDirectory.Path, "big.bin", TempDirectory.RandomBytes(40 * Chunk, seed: 27));
        TempDirectory.WriteFile(_stagingDirectory.Path, "other.bin", TempDirectory.RandomBytes(40 * Chunk, seed: 28));
        using var cancellation = new CancellationTokenSource();
        var workers = new HashSet<Thread>();
        var chunksAfterCancel = 0;
        void OnBytes(long bytes)
        {
            lock (workers)
            {
                workers.Add(Thread.CurrentThread);
                if (cancellation.IsCancellationRequested)
                {
                    chunksAfterCancel++;
                }
            }

            cancellation.Cancel();
        }

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _copier.CopyAndVerifyAsync(
            StagingValidator.Validate(_stagingDirectory, ["big.bin", "other.bin"], NoneReported), _partial, OnBytes, cancellation.Token));

        // Each of the 3 workers finishes at most the chunk it had started; then every thread ends.
        Assert.InRange(chunksAfterCancel, 0, 2);
        Assert.All(workers, w => Assert.True(w.Join(TimeSpan.FromSeconds(30)), "a copy worker still runs after the copy was cancelled"));
    }

    [Fact]
    public async Task Copy_WorkersAreDedicatedThreadsAndBytesAddUp()
    {
        var sizes = new[] { (6 * Chunk) + 9, Chunk, 10, 0 };
        for (var i = 0; i < sizes.Length; i++)
        {
            TempDirectory.WriteFile(_stagingDirectory.Path, $"f{i}.bin", TempDirectory.RandomBytes(sizes[i], seed: 30 + i));
        }

        long bytes = 0;
        var poolThreads = 0;
        var threads = new HashSet<int>();
        // The first worker to report holds on until a second one reports too (bounded): on two
        // loaded cores one worker can otherwise copy every file before the others are first
        // scheduled, and the test would fail though the engine is right. A copier that runs one
        // worker at a time never releases it, and the assertion below fails.
        using var secondWorker = new ManualResetEventSlim();
        var held = 0;
        void OnBytes(long n)
        {
            Interlocked.Add(ref bytes, n);
            bool first;
            lock (threads)
            {
                threads.Add(Environment.CurrentManagedThreadId);
                poolThreads += Thread.CurrentThread.IsThreadPoolThread ? 1 : 0;
                first = threads.Count == 1 && held++ == 0;
                if (threads.Count > 1)
                {
                    secondWorker.Set();
                }
            }

            if (first)
            {
                secondWorker.Wait(TimeSpan.FromSeconds(30));
            }
        }

        var budget = new RecordingBudget(readBack: true);
        var result = await _copier.CopyAndVerifyAsync(
            StagingValidator.Validate(_stagingDirectory, [.. sizes.Select((_, i) => $"f{i}.bin")], NoneReported), _partial,
            new CopyPolicy(CopyPace.FullSpeed(), budget), OnBytes, CancellationToken.None);

        Assert.Equal(sizes.Sum(s => (long)s), bytes);
        Assert.Equal(0, poolThreads);
        Assert.False(budget.CalledOnPoolThread);
        // Workers copy side by side on threads of their own.
        Assert.True(threads.Count > 1, $"one worker copied everything ({threads.Count})");
        Assert.Equal(sizes.Length, budget.Calls.Count);
        Assert.Equal(0, budget.Calls.Min(c => c.StillToCopy));
        Assert.All(result.Files, f => Assert.Equal(ManifestFile.ReadBack, f.Verification));
    }

    [Fact]
    public async Task Copy_BudgetSaysNoReadBack_CommitsOnWriteHashWithoutReading()
    {
        TempDirectory.WriteFile(_stagingDirectory.Path, "a.bin", TempDirectory.RandomBytes((2 * Chunk) + 7, seed: 40));
        TempDirectory.WriteFile(_stagingDirectory.Path, "b.bin", TempDirectory.RandomBytes(300, seed: 41));
        // Damage that a read-back would catch: none must happen.
        var budget = new RecordingBudget(readBack: false, (copied, _) => FileDamage.FlipBit(Path.Combine(_partial, copied.Path), 0));

        var result = await CopyAsync(_partial, new CopyPolicy(CopyPace.FullSpeed(), budget), "a.bin", "b.bin");

        Assert.All(result.Files, f => Assert.Equal(ManifestFile.WriteHash, f.Verification));
        Assert.Equal(["a.bin", "b.bin"], budget.Calls.Select(c => c.File.Path).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void HashFromStorage_MultiRangeFile_IsXxh128OfWholeFile()
    {
        var bytes = TempDirectory.RandomBytes((7 * Chunk) + 4097, seed: 42);
        var path = TempDirectory.WriteFile(_temp.CreateDirectory("elsewhere"), "f.bin", bytes);

        Assert.Equal(Convert.ToHexStringLower(XxHash128.Hash(bytes)), FileHasher.HashFromStorage(path, Chunk));
    }

    [Theory]
    [InlineData(4 << 20, 4, 4 << 20)]
    [InlineData(4 << 20, 64, 512 << 10)]
    [InlineData(5000, 2, 8192)]
    public void ChunkSize_IsAlignedAndAllWorkersStayWithinBudget(int bufferSize, int workers, int expected)
    {
        var chunk = RangeWorkers.ChunkSizeFor(bufferSize, workers);

        Assert.Equal(expected, chunk);
        Assert.True((long)chunk * workers <= RangeWorkers.MemoryBudget);
    }

    private Task<CopyResult> CopyAsync(string partial, CopyPolicy? policy, params string[] paths) =>
        _copier.CopyAndVerifyAsync(StagingValidator.Validate(_stagingDirectory, paths, NoneReported), partial, policy, null, CancellationToken.None);

    private static async Task<string> XxhsumAsync(string path)
    {
        using var process = Process.Start(new ProcessStartInfo("xxhsum", ["-H2", path]) { UseShellExecute = false, RedirectStandardOutput = true })!;
        var output = await process.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, process.ExitCode);
        return output.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
    }

    private sealed class RecordingBudget(bool readBack, Action<ManifestFile, long>? onCall = null) : IReadBackBudget
    {
        public List<(ManifestFile File, long StillToCopy)> Calls { get; } = [];

        public bool CalledOnPoolThread { get; private set; }

        public bool ShouldReadBack(ManifestFile copied, long bytesStillToCopy)
        {
            lock (Calls)
            {
                Calls.Add((copied, bytesStillToCopy));
                CalledOnPoolThread |= Thread.CurrentThread.IsThreadPoolThread;
            }

            onCall?.Invoke(copied, bytesStillToCopy);
            return readBack;
        }
    }

    /// <summary>tests/faultfs mounted over a backing directory (see its README).</summary>
    private sealed class FuseMount : IAsyncDisposable
    {
        private readonly ObservedProcess _process;

        private FuseMount(ObservedProcess process, string root)
        {
            _process = process;
            Backing = Path.Combine(root, "fuse-backing");
            MountPoint = Path.Combine(root, "fuse");
            Control = Path.Combine(root, "fuse-control");
        }

        public string Backing { get; }

        public string MountPoint { get; }

        public string Control { get; }

        public static async Task<FuseMount> MountAsync(string root)
        {
            foreach (var name in new[] { "fuse-backing", "fuse", "fuse-control" })
            {
                Directory.CreateDirectory(Path.Combine(root, name));
            }

            var process = ObservedProcess.Start("faultfs", "/usr/bin/python3",
                [RepoPaths.FaultFsScript, Path.Combine(root, "fuse-backing"), Path.Combine(root, "fuse"), "--control", Path.Combine(root, "fuse-control")],
                new Dictionary<string, string>());
            var mount = new FuseMount(process, root);
            await process.WaitForLineAsync("^mounted ");
            return mount;
        }

        /// <summary>Replaces the rules atomically, as the README asks.</summary>
        public void SetRule(string ruleJson)
        {
            var temp = Path.Combine(Control, "rules.json.tmp");
            File.WriteAllText(temp, "[" + ruleJson + "]");
            File.Move(temp, Path.Combine(Control, "rules.json"), overwrite: true);
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Signal(Posix.SigTerm);
                await _process.WaitForExitAsync(TimeSpan.FromSeconds(20));
            }

            await _process.DisposeAsync();
        }
    }
}
