using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Moves a checkpoint's bytes from staging into its <c>.partial</c> directory on storage, hashing
/// while copying, and reads each file back to verify it. The copy workers (dedicated threads, see
/// <see cref="RangeWorkers"/>) take files largest first, one each while there are files no worker is
/// on, and otherwise join one, writing its chunks at their offsets at once, so one big file is as fast
/// as many small ones. Storage is written and read back with O_DIRECT from aligned buffers: no byte
/// passes through the page cache (one user-space copy fewer, no cache to drop, and the read-back reads
/// what storage holds); a file system that refuses O_DIRECT (at open or at the first write or read)
/// gets the buffered path for that file, with the cache dropped after fsync as before.
/// </summary>
/// <param name="parallelism">Copy workers; each holds one chunk buffer (see <see cref="RangeWorkers.ChunkSizeFor"/>).</param>
/// <param name="readBack">Re-read every file from storage (CHECKPOINT_VERIFY=read-back); else the hash taken while writing and the fsync are trusted.</param>
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
        cancellationToken.ThrowIfCancellationRequested();
        var flush = new Flush(policy ?? CopyPolicy.FullSpeed(readBack), onBytes, time, files.Sum(f => f.Size), files.Count);
        // Largest first: its chunks keep every worker busy, and the file that finishes last is a small one.
        var jobs = Enumerable.Range(0, files.Count).OrderByDescending(i => files[i].Size)
            .Select(i => (RangeJob)new CopyJob(files[i], i, Path.Combine(partialDirectory, files[i].RelativePath), flush)).ToList();
        await new RangeWorkers(jobs, parallelism, bufferSize, flush.Policy.Pace, cancellationToken).RunAsync().ConfigureAwait(false);

        // Directories created for nested files must be durable too, or a crash can lose their entries.
        foreach (var directory in files.Select(f => Path.GetDirectoryName(Path.Combine(partialDirectory, f.RelativePath))!)
                     .Distinct(StringComparer.Ordinal).OrderByDescending(d => d.Length))
        {
            NativeFile.FsyncDirectory(directory);
        }

        return new CopyResult(flush.Entries, flush.LastCopied == DateTimeOffset.MinValue ? time.GetUtcNow() : flush.LastCopied);
    }

    /// <summary>Re-reads every file from storage, bypassing the cache, and compares its hash.</summary>
    /// <exception cref="VerificationFailedException">The first file whose bytes differ.</exception>
    public Task VerifyAsync(IReadOnlyList<ManifestFile> entries, string directory, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        var jobs = entries.OrderByDescending(e => e.Size).Select(entry =>
        {
            var path = Path.Combine(directory, entry.Path);
            return (RangeJob)new StorageHashJob(
                entry.Size, () => File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read), ownsHandle: true, path, entry.Path, entry.Xxh128, onBytes);
        }).ToList();
        return new RangeWorkers(jobs, parallelism, bufferSize, CopyPace.FullSpeed(), cancellationToken).RunAsync();
    }

    /// <summary>What the workers of one flush share.</summary>
    private sealed class Flush(CopyPolicy policy, Action<long>? onBytes, TimeProvider time, long totalBytes, int fileCount)
    {
        private readonly object _gate = new();
        private long _written;

        public CopyPolicy Policy => policy;

        public Action<long>? OnBytes => onBytes;

        public ManifestFile[] Entries { get; } = new ManifestFile[fileCount];

        public DateTimeOffset LastCopied { get; private set; } = DateTimeOffset.MinValue;

        public long StillToCopy => totalBytes - Interlocked.Read(ref _written);

        public void Written(int bytes)
        {
            Interlocked.Add(ref _written, bytes);
            onBytes?.Invoke(bytes);
        }

        public void Copied()
        {
            lock (_gate)
            {
                var now = time.GetUtcNow();
                LastCopied = now > LastCopied ? now : LastCopied;
            }
        }
    }

    /// <summary>One file: copied chunk by chunk, fsynced, then (when the budget says so) read back.</summary>
    private sealed class CopyJob : RangeJob
    {
        private const int EInval = 22;
        private readonly StagedFile _file;
        private readonly int _index;
        private readonly string _destination;
        private readonly Flush _flush;
        private readonly string _quoted;
        private readonly string _reading;
        private readonly string _writing;
        private SafeFileHandle? _source;
        private SafeFileHandle? _target;
        private FileStatus _before;
        private volatile bool _direct;
        private volatile bool _padded;
        private ManifestFile? _entry;
        private StorageHashJob? _readBack;

        public CopyJob(StagedFile file, int index, string destination, Flush flush)
            : base(file.Size)
        {
            (_file, _index, _destination, _flush) = (file, index, destination, flush);
            _quoted = UserText.Quote(file.RelativePath);
            _reading = $"reading {_quoted} from the staging directory";
            _writing = $"writing {_quoted} to the checkpoint storage";
        }

        public override void Open()
        {
            if (_readBack is not null)
            {
                _readBack.Open();
                return;
            }

            var doing = _reading;
            try
            {
                // Not File.OpenHandle(SourcePath): the trainer could have swapped the file, or a directory
                // above it, for a symlink since it was validated, and the sidecar can read things the trainer
                // must not get into a checkpoint.
                _source = NativeFile.OpenFileBeneath(_file.Staging.Handle, _file.RelativePath);
                _before = NativeFile.Status(_source, _file.SourcePath);
                doing = _writing;
                Directory.CreateDirectory(Path.GetDirectoryName(_destination)!);
                _target = File.OpenHandle(_destination, FileMode.CreateNew, FileAccess.Write, FileShare.None);
                NativeFile.Preallocate(_target, _file.Size, _destination);
                _direct = NativeFile.TrySetDirect(_target, direct: true, _destination);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageErrors.Failed(doing, e);
            }
        }

        public override void Transfer(long offset, Span<byte> buffer, int length)
        {
            if (_readBack is not null)
            {
                _readBack.Transfer(offset, buffer, length);
                return;
            }

            var doing = _reading;
            try
            {
                var read = NativeFile.ReadFully(_source!, buffer[..length], offset, out var errno);
                if (read < 0)
                {
                    throw NativeFile.Error("pread", _file.SourcePath, errno);
                }

                if (read < length)
                {
                    throw Changed($"reported {_file.Size} bytes, read {offset + read}");
                }

                doing = _writing;
                Write(offset, buffer, length);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageErrors.Failed(doing, e);
            }

            _flush.Written(length);
        }

        public override bool Finish()
        {
            if (_readBack is not null)
            {
                _readBack.Complete(Hash);
                _flush.Entries[_index] = _entry! with { Verification = ManifestFile.ReadBack };
                return false;
            }

            var doing = _reading;
            try
            {
                // A file that grew since it was validated has bytes past its reported size.
                Span<byte> probe = stackalloc byte[1];
                var beyond = NativeFile.ReadFully(_source!, probe, _file.Size, out var errno);
                if (beyond != 0)
                {
                    throw beyond < 0 ? NativeFile.Error("pread", _file.SourcePath, errno) : Changed($"reported {_file.Size} bytes, found more");
                }

                // A rewrite in place keeps the size, and the hash would be the hash of the torn bytes, so
                // read-back verification and resume checks would pass: only the file's own status tells.
                if (NativeFile.Status(_source!, _file.SourcePath) != _before)
                {
                    throw new StorageException($"{_quoted} changed while it was copied (written to or its attributes changed); "
                        + "a trainer must not touch a reported file until its checkpoint has ended");
                }

                doing = _writing;
                if (_padded)
                {
                    // The last block was written whole (O_DIRECT writes whole blocks); cut the zeros past the end.
                    NativeFile.Truncate(_target!, _file.Size, _destination);
                }

                NativeFile.Fsync(_target!, _destination);
                if (!_direct)
                {
                    // Written pages are clean after fsync; dropping them frees the pod's memory and makes the
                    // later read-back come from storage.
                    FileHasher.DropCacheQuietly(_target!, _destination);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageErrors.Failed(doing, e);
            }

            CloseCopy();
            _entry = new ManifestFile(_file.RelativePath, _file.Size, FileHasher.ToHex(Hash));
            _flush.Copied();
            if (!_flush.Policy.ReadBack.ShouldReadBack(_entry, _flush.StillToCopy))
            {
                _flush.Entries[_index] = _entry with { Verification = ManifestFile.WriteHash };
                return false;
            }

            _readBack = new StorageHashJob(
                _file.Size, () => File.OpenHandle(_destination, FileMode.Open, FileAccess.Read, FileShare.Read), ownsHandle: true,
                _destination, _file.RelativePath, _entry.Xxh128, onBytes: null);
            return true;
        }

        public override void Close()
        {
            CloseCopy();
            _readBack?.Close();
        }

        private void Write(long offset, Span<byte> buffer, int length)
        {
            if (_direct)
            {
                // Only the last chunk can end off a block boundary. Written whole and truncated after,
                // rather than through a second, buffered handle: every byte stays out of the page cache
                // and no second open of the file by path is needed; the padding exists only in .partial.
                var whole = (int)AlignedBuffer.RoundUp(length);
                if (whole != length)
                {
                    buffer[length..whole].Clear();
                    _padded = true;
                }

                var errno = NativeFile.WriteFully(_target!, buffer[..whole], offset);
                if (errno == 0)
                {
                    return;
                }

                // Some file systems (FUSE among them) accept O_DIRECT at open and refuse the first write.
                if (errno != EInval)
                {
                    throw NativeFile.Error("pwrite", _destination, errno);
                }

                lock (Lock)
                {
                    if (_direct)
                    {
                        NativeFile.TrySetDirect(_target!, direct: false, _destination);
                        _direct = false;
                    }
                }
            }

            var error = NativeFile.WriteFully(_target!, buffer[..length], offset);
            if (error != 0)
            {
                throw NativeFile.Error("pwrite", _destination, error);
            }
        }

        private StorageException Changed(string how) =>
            new($"{_quoted} changed while it was copied: {how}; a trainer must not touch a reported file until its checkpoint has ended");

        private void CloseCopy()
        {
            _source?.Dispose();
            _target?.Dispose();
        }
    }
}

/// <param name="Files">Manifest entries, in the order the files were given.</param>
/// <param name="LastCopied">When the last file was copied and fsynced; verification of the others overlapped the copy.</param>
public sealed record CopyResult(IReadOnlyList<ManifestFile> Files, DateTimeOffset LastCopied);
