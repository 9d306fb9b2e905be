using System.Buffers;
using System.IO.Hashing;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Moves a checkpoint's bytes from staging into its <c>.partial</c> directory on storage, hashing
/// while copying, and reads each file back to verify it. Several files are in flight at once; each file is
/// copied with large sequential reads and writes (not File.Copy, whose fsync and errors we could
/// not control).
/// </summary>
/// <param name="readBack">Re-read every file from storage with the client cache dropped (CHECKPOINT_VERIFY=read-back); else the hash taken while writing and the fsync are trusted.</param>
public sealed class CheckpointCopier(int parallelism, int bufferSize, TimeProvider time, bool readBack = true)
{
    /// <summary>
    /// Copies every file, fsyncs it, and verifies it as soon as it is on storage, while other files
    /// are still being copied: reading one file back overlaps writing the next, so the flush takes
    /// little more than the copy alone.
    /// </summary>
    /// <returns>The manifest entries, in the order given, and when the last file was on storage.</returns>
    /// <exception cref="VerificationFailedException">A file whose bytes on storage differ from what was copied.</exception>
    public Task<CopyResult> CopyAndVerifyAsync(
        IReadOnlyList<StagedFile> files, string partialDirectory, Action<long>? onBytes, CancellationToken cancellationToken) =>
        CopyAndVerifyAsync(files, partialDirectory, policy: null, onBytes, cancellationToken);

    /// <param name="policy">Pace and read-back budget; null: full speed, every file read back when this copier was made to.</param>
    public async Task<CopyResult> CopyAndVerifyAsync(
        IReadOnlyList<StagedFile> files, string partialDirectory, CopyPolicy? policy, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        policy ??= CopyPolicy.FullSpeed(readBack);
        var entries = new ManifestFile[files.Count];
        var stillToCopy = files.Sum(f => f.Size);
        var counting = new Action<long>(n =>
        {
            Interlocked.Add(ref stillToCopy, -n);
            onBytes?.Invoke(n);
        });
        var lastCopied = DateTimeOffset.MinValue;
        var gate = new object();
        // Largest first: with several files in flight, the file that finishes last is then a small one.
        var largestFirst = Enumerable.Range(0, files.Count).OrderByDescending(i => files[i].Size).ToList();
        await ForEachFileAsync(largestFirst, index =>
        {
            var entry = CopyFile(files[index], partialDirectory, counting, cancellationToken);
            lock (gate)
            {
                var now = time.GetUtcNow();
                lastCopied = now > lastCopied ? now : lastCopied;
            }

            var verified = policy.ReadBack.ShouldReadBack(entry, Interlocked.Read(ref stillToCopy));
            if (verified)
            {
                VerifyFile(entry, partialDirectory, onBytes: null, cancellationToken);
            }

            entries[index] = entry with { Verification = verified ? ManifestFile.ReadBack : ManifestFile.WriteHash };
        }, cancellationToken).ConfigureAwait(false);

        // Directories created for nested files must be durable too, or a crash can lose their entries.
        foreach (var directory in files.Select(f => Path.GetDirectoryName(Path.Combine(partialDirectory, f.RelativePath))!)
                     .Distinct(StringComparer.Ordinal).OrderByDescending(d => d.Length))
        {
            NativeFile.FsyncDirectory(directory);
        }

        return new CopyResult(entries, lastCopied == DateTimeOffset.MinValue ? time.GetUtcNow() : lastCopied);
    }

    /// <summary>Re-reads every file from storage with the cache dropped and compares its hash.</summary>
    /// <exception cref="VerificationFailedException">The first file whose bytes differ.</exception>
    public Task VerifyAsync(IReadOnlyList<ManifestFile> entries, string directory, Action<long>? onBytes, CancellationToken cancellationToken) =>
        ForEachFileAsync(Enumerable.Range(0, entries.Count).ToList(), index => VerifyFile(entries[index], directory, onBytes, cancellationToken), cancellationToken);

    private void VerifyFile(ManifestFile entry, string directory, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        var path = Path.Combine(directory, entry.Path);
        string actual;
        try
        {
            actual = FileHasher.HashFromStorage(path, bufferSize, onBytes, cancellationToken);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed($"reading {UserText.Quote(entry.Path)} back from the checkpoint storage", e);
        }

        if (!string.Equals(actual, entry.Xxh128, StringComparison.Ordinal))
        {
            throw new VerificationFailedException(entry.Path, entry.Xxh128, actual);
        }
    }

    private ManifestFile CopyFile(StagedFile file, string partialDirectory, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        var destination = Path.Combine(partialDirectory, file.RelativePath);
        var quoted = UserText.Quote(file.RelativePath);
        var reading = $"reading {quoted} from the staging directory";
        var writing = $"writing {quoted} to the checkpoint storage";
        // What the failure message says was being done if the next call throws.
        var doing = reading;
        try
        {
            // Not File.OpenHandle(SourcePath): the trainer could have swapped the file, or a directory
            // above it, for a symlink since it was validated, and the sidecar can read things the trainer
            // must not get into a checkpoint.
            using var source = NativeFile.OpenFileBeneath(file.Staging.Handle, file.RelativePath);
            var before = NativeFile.Status(source, file.SourcePath);
            doing = writing;
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            using var target = File.OpenHandle(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            NativeFile.Preallocate(target, file.Size, destination);
            var hash = new XxHash128();
            var buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
            long offset = 0;
            try
            {
                while (true)
                {
                    doing = reading;
                    var read = RandomAccess.Read(source, buffer.AsSpan(0, bufferSize), offset);
                    if (read == 0)
                    {
                        break;
                    }

                    cancellationToken.ThrowIfCancellationRequested();
                    var chunk = buffer.AsSpan(0, read);
                    hash.Append(chunk);
                    doing = writing;
                    RandomAccess.Write(target, chunk, offset);
                    offset += read;
                    onBytes?.Invoke(read);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            if (offset != file.Size)
            {
                throw new StorageException($"{quoted} changed while it was copied: reported {file.Size} bytes, read {offset}; "
                    + "a trainer must not touch a reported file until its checkpoint has ended");
            }

            // A rewrite in place keeps the size, and the hash would be the hash of the torn bytes, so
            // read-back verification and resume checks would pass: only the file's own status tells.
            doing = reading;
            if (NativeFile.Status(source, file.SourcePath) != before)
            {
                throw new StorageException($"{quoted} changed while it was copied (written to or its attributes changed); "
                    + "a trainer must not touch a reported file until its checkpoint has ended");
            }

            doing = writing;
            NativeFile.Fsync(target, destination);
            // Written pages are clean after fsync; dropping them now frees the pod's memory and makes the
            // later read-back come from storage.
            FileHasher.DropCacheQuietly(target, destination);
            return new ManifestFile(file.RelativePath, offset, FileHasher.ToHex(hash));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed(doing, e);
        }
    }

    private Task ForEachFileAsync(IReadOnlyList<int> indexes, Action<int> body, CancellationToken cancellationToken) =>
        Parallel.ForEachAsync(
            indexes,
            new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = cancellationToken },
            (index, _) =>
            {
                body(index);
                return ValueTask.CompletedTask;
            });
}

/// <param name="Files">Manifest entries, in the order the files were given.</param>
/// <param name="LastCopied">When the last file was copied and fsynced; verification of the others overlapped the copy.</param>
public sealed record CopyResult(IReadOnlyList<ManifestFile> Files, DateTimeOffset LastCopied);
