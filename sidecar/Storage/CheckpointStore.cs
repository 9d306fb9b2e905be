using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// The job's directory on shared storage: commits a copied checkpoint atomically, finds the latest
/// valid one for resume, applies retention and sweeps what a crash left behind. Only POSIX behaviour
/// that holds on NFS is used: rename within a directory, fsync of files and directories. What it
/// reads there is untrusted (<see cref="StorageFile"/>): a bad entry is "not a checkpoint", logged
/// and passed over, never a hang or an exception that stops the sidecar.
/// </summary>
public sealed class CheckpointStore(CheckpointLayout layout, ILogger<CheckpointStore> logger)
{
    public CheckpointLayout Layout => layout;

    public void EnsureJobDirectory()
    {
        var created = !Directory.Exists(layout.JobDirectory);
        Directory.CreateDirectory(layout.JobDirectory);
        if (created)
        {
            // The new entries in <storage>/<namespace> must survive a crash too.
            NativeFile.FsyncDirectory(Path.GetDirectoryName(layout.JobDirectory)!);
            NativeFile.FsyncDirectory(Path.GetDirectoryName(Path.GetDirectoryName(layout.JobDirectory)!)!);
        }
    }

    /// <summary>
    /// Removes what an interrupted flush or retention left: never a committed checkpoint. Best effort:
    /// a leftover that cannot be removed is logged and left (it is never read), and the rest swept.
    /// Names are handled as raw bytes, so one that is not UTF-8 is removed too.
    /// </summary>
    /// <returns>How many leftovers were removed.</returns>
    public int SweepLeftovers()
    {
        using var jobDirectory = StorageFile.OpenDirectoryIfExists(layout.JobDirectory);
        if (jobDirectory is null)
        {
            return 0;
        }

        var swept = 0;
        var latestTempName = Encoding.UTF8.GetBytes(Path.GetFileName(layout.LatestTempFile));
        foreach (var name in NativeFile.ListDirectory(jobDirectory, layout.JobDirectory))
        {
            var isLatestTemp = name.AsSpan().SequenceEqual(latestTempName);
            if (!isLatestTemp && !name.AsSpan().EndsWith(PartialSuffix) && !name.AsSpan().EndsWith(DeletingSuffix))
            {
                continue;
            }

            var path = Path.Combine(layout.JobDirectory, Encoding.UTF8.GetString(name));
            try
            {
                NativeFile.RemoveTreeAt(jobDirectory, name, path);
            }
            catch (IOException e)
            {
                StorageLog.SweepFailed(logger, path, e.Message);
                continue;
            }

            if (!isLatestTemp)
            {
                StorageLog.Swept(logger, path);
                swept++;
            }
        }

        return swept;
    }

    private static readonly byte[] PartialSuffix = Encoding.UTF8.GetBytes(CheckpointLayout.PartialSuffix);

    private static readonly byte[] DeletingSuffix = Encoding.UTF8.GetBytes(CheckpointLayout.DeletingSuffix);

    /// <summary>A fresh, empty <c>.partial</c> directory for a checkpoint about to be copied.</summary>
    public string CreatePartialDirectory(string checkpointId)
    {
        var partial = layout.PartialDirectory(checkpointId);
        try
        {
            EnsureJobDirectory();
            NativeFile.RemoveTree(partial);
            Directory.CreateDirectory(partial);
            return partial;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed($"creating the checkpoint directory {UserText.Quote(partial)}", e);
        }
    }

    public void DiscardPartial(string checkpointId)
    {
        var partial = layout.PartialDirectory(checkpointId);
        try
        {
            NativeFile.RemoveTree(partial);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The sweep at the next start removes it; it is never read in the meantime.
            StorageLog.DiscardFailed(logger, partial, StorageErrors.Reason(e));
        }
    }

    /// <summary>
    /// Makes a verified <c>.partial</c> directory the latest checkpoint: manifest last, rename, then
    /// the LATEST pointer. Until the rename the checkpoint does not exist; until LATEST moves, the
    /// previous one stays the one resumed from.
    /// </summary>
    /// <returns>The committed directory.</returns>
    public string Commit(CheckpointManifest manifest)
    {
        var partial = layout.PartialDirectory(manifest.Id);
        var committed = layout.CommittedDirectory(manifest.Id);
        if (Directory.Exists(committed))
        {
            // Committed checkpoints are immutable, and someone may be reading this one.
            throw new StorageException($"checkpoint directory '{committed}' already exists; refusing to replace it", errno: 17);
        }

        var doing = $"writing the manifest of checkpoint '{manifest.Id}'";
        try
        {
            WriteDurably(Path.Combine(partial, CheckpointLayout.ManifestFileName), manifest.ToUtf8Json());
            NativeFile.FsyncDirectory(partial);

            doing = $"renaming '{partial}' to '{committed}'";
            Directory.Move(partial, committed);
            NativeFile.FsyncDirectory(layout.JobDirectory);

            doing = $"pointing '{layout.LatestFile}' at checkpoint '{manifest.Id}'";
            // Whatever is in the way (a FIFO would block the open for writing forever) goes first.
            NativeFile.RemoveTree(layout.LatestTempFile);
            WriteDurably(layout.LatestTempFile, Encoding.UTF8.GetBytes(manifest.Id + "\n"));
            File.Move(layout.LatestTempFile, layout.LatestFile, overwrite: true);
            NativeFile.FsyncDirectory(layout.JobDirectory);
            return committed;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed(doing, e);
        }
    }

    /// <summary>
    /// Deletes committed checkpoints beyond the newest <paramref name="keep"/>; never the one LATEST
    /// names. Each is first renamed to <c>.deleting</c> so a half-deleted directory is never taken
    /// for a checkpoint.
    /// </summary>
    public IReadOnlyList<string> ApplyRetention(int keep)
    {
        var latest = ReadLatestId();
        var removed = new List<string>();
        var beyondNewest = layout.CommittedCandidates().OrderDescending(StringComparer.Ordinal).Skip(keep);
        foreach (var id in beyondNewest.Where(id => id != latest).Order(StringComparer.Ordinal).ToList())
        {
            var deleting = layout.DeletingDirectory(id);
            Directory.Move(layout.CommittedDirectory(id), deleting);
            NativeFile.RemoveTree(deleting);
            removed.Add(id);
            StorageLog.Retired(logger, id);
        }

        if (removed.Count > 0)
        {
            NativeFile.FsyncDirectory(layout.JobDirectory);
        }

        return removed;
    }

    /// <summary>The id LATEST holds, or null when there is none or it cannot be trusted (logged).</summary>
    public string? ReadLatestId()
    {
        ReadOnlyMemory<byte>? content;
        try
        {
            content = StorageFile.ReadAllIfExists(layout.JobDirectory, CheckpointLayout.LatestFileName, StorageFile.LatestPointerLimit);
        }
        catch (IOException e)
        {
            StorageLog.LatestIgnored(logger, layout.LatestFile, StorageErrors.Describe(e));
            return null;
        }

        var id = content is { } bytes ? Encoding.UTF8.GetString(bytes.Span).Trim() : "";
        return id.Length == 0 ? null : id;
    }

    /// <inheritdoc cref="FindLatestValid(bool, int, Action{string, string}?, Action?, CancellationToken)"/>
    public CommittedCheckpoint? FindLatestValid(bool verifyHashes, int bufferSize, Action<string, string>? onInvalid, CancellationToken cancellationToken) =>
        FindLatestValid(verifyHashes, bufferSize, onInvalid, onProgress: null, cancellationToken);

    /// <summary>
    /// The checkpoint to resume from: the one LATEST names if it validates, else the newest other
    /// committed checkpoint that does. A directory that fails validation is never returned; whatever
    /// goes wrong while checking one (a FIFO, a symlink, a null in the manifest, an I/O error) makes
    /// it not valid, and the next is tried.
    /// </summary>
    /// <param name="onInvalid">Told of each checkpoint rejected, and why.</param>
    /// <param name="onProgress">Called as the search moves on (a candidate, a file, a buffer hashed), so a caller can tell a slow search from a stuck one.</param>
    public CommittedCheckpoint? FindLatestValid(
        bool verifyHashes, int bufferSize, Action<string, string>? onInvalid, Action? onProgress, CancellationToken cancellationToken)
    {
        using var jobDirectory = StorageFile.OpenDirectoryIfExists(layout.JobDirectory);
        if (jobDirectory is null)
        {
            return null;
        }

        var latest = ReadLatestId();
        var candidates = layout.CommittedCandidates().OrderDescending(StringComparer.Ordinal).ToList();
        if (latest is not null)
        {
            candidates.Remove(latest);
            candidates.Insert(0, latest);
        }

        foreach (var id in candidates)
        {
            cancellationToken.ThrowIfCancellationRequested();
            onProgress?.Invoke();
            CommittedCheckpoint? checkpoint = null;
            string? problem;
            try
            {
                problem = Validate(jobDirectory, id, verifyHashes, bufferSize, onProgress, cancellationToken, out checkpoint);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                problem = StorageErrors.Describe(e);
            }

            if (problem is null)
            {
                return checkpoint;
            }

            StorageLog.InvalidCheckpoint(logger, id, problem);
            onInvalid?.Invoke(id, problem);
        }

        return null;
    }

    /// <returns>Why the checkpoint is not valid, or null when it is.</returns>
    /// <exception cref="IOException">An entry of the checkpoint cannot be read as what it must be.</exception>
    private string? Validate(
        SafeFileHandle jobDirectory, string id, bool verifyHashes, int bufferSize, Action? onProgress, CancellationToken cancellationToken,
        out CommittedCheckpoint? checkpoint)
    {
        checkpoint = null;
        if (!CheckpointLayout.IsCommittedName(id))
        {
            return "it is not the name of a checkpoint";
        }

        // Opened once, without following a symlink, and everything below through it: a checkpoint
        // directory that links elsewhere is not part of this job.
        using var directory = StorageFile.OpenDirectory(jobDirectory, id);
        CheckpointManifest manifest;
        try
        {
            manifest = CheckpointManifest.FromUtf8Json(StorageFile.ReadAll(directory, CheckpointLayout.ManifestFileName, StorageFile.ManifestLimit).Span);
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or InvalidDataException)
        {
            return $"no readable manifest: {StorageErrors.Describe(e)}";
        }

        if (manifest.FormatVersion != CheckpointManifest.CurrentFormatVersion)
        {
            return $"manifest format version {manifest.FormatVersion} is not {CheckpointManifest.CurrentFormatVersion}";
        }

        if (manifest.Id != id)
        {
            return $"manifest names checkpoint {UserText.Quote(manifest.Id)}";
        }

        foreach (var file in manifest.Files)
        {
            string relative;
            try
            {
                relative = StagingValidator.NormaliseRelative(file.Path);
            }
            catch (InvalidReportException e)
            {
                return $"manifest lists an unsafe path: {e.Message}";
            }

            onProgress?.Invoke();
            var problem = ValidateFile(directory, id, relative, file, verifyHashes ? bufferSize : null, onProgress, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
        }

        checkpoint = new CommittedCheckpoint(layout.CommittedDirectory(id), manifest);
        return null;
    }

    /// <param name="hashBufferSize">null: size only.</param>
    /// <returns>Why the file does not match its manifest entry, or null when it does.</returns>
    private string? ValidateFile(
        SafeFileHandle directory, string id, string relative, ManifestFile file, int? hashBufferSize, Action? onProgress, CancellationToken cancellationToken)
    {
        try
        {
            using var handle = StorageFile.OpenRegular(directory, relative, out var size);
            if (size != file.Size)
            {
                return $"file {UserText.Quote(file.Path)} has {size} bytes, the manifest says {file.Size}";
            }

            if (hashBufferSize is not { } bufferSize)
            {
                return null;
            }

            var path = Path.Combine(layout.CommittedDirectory(id), relative);
            var actual = FileHasher.HashFromStorage(handle, path, bufferSize, _ => onProgress?.Invoke(), cancellationToken);
            return actual == file.Xxh128 ? null : $"file '{file.Path}' hashes to {actual}, the manifest says {file.Xxh128}";
        }
        catch (StorageEntryException e)
        {
            return "file " + e.Message;
        }
        catch (IOException e)
        {
            return $"file '{file.Path}' cannot be read: {StorageErrors.Describe(e)}";
        }
    }

    private static void WriteDurably(string path, ReadOnlySpan<byte> content)
    {
        // CreateNew (O_EXCL): never opens a FIFO or follows a symlink someone left under this name.
        using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        RandomAccess.Write(handle, content, 0);
        NativeFile.Fsync(handle, path);
    }
}
