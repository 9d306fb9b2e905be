using Microsoft.Extensions.Logging;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// The job's directory on shared storage: commits a copied checkpoint atomically, finds the latest
/// valid one for resume, applies retention and sweeps what a crash left behind. Only POSIX behaviour
/// that holds on NFS is used: rename within a directory, fsync of files and directories.
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

    /// <summary>Removes what an interrupted flush or retention left: never a committed checkpoint.</summary>
    public int SweepLeftovers()
    {
        var swept = 0;
        if (!Directory.Exists(layout.JobDirectory))
        {
            return swept;
        }

        foreach (var directory in Directory.EnumerateDirectories(layout.JobDirectory))
        {
            var name = Path.GetFileName(directory);
            if (name.EndsWith(CheckpointLayout.PartialSuffix, StringComparison.Ordinal)
                || name.EndsWith(CheckpointLayout.DeletingSuffix, StringComparison.Ordinal))
            {
                Directory.Delete(directory, recursive: true);
                StorageLog.Swept(logger, directory);
                swept++;
            }
        }

        if (File.Exists(layout.LatestTempFile))
        {
            File.Delete(layout.LatestTempFile);
        }

        return swept;
    }

    /// <summary>A fresh, empty <c>.partial</c> directory for a checkpoint about to be copied.</summary>
    public string CreatePartialDirectory(string checkpointId)
    {
        var partial = layout.PartialDirectory(checkpointId);
        try
        {
            EnsureJobDirectory();
            if (Directory.Exists(partial))
            {
                Directory.Delete(partial, recursive: true);
            }

            Directory.CreateDirectory(partial);
            return partial;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed($"creating the checkpoint directory '{partial}'", e);
        }
    }

    public void DiscardPartial(string checkpointId)
    {
        var partial = layout.PartialDirectory(checkpointId);
        try
        {
            if (Directory.Exists(partial))
            {
                Directory.Delete(partial, recursive: true);
            }
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
            WriteDurably(layout.LatestTempFile, System.Text.Encoding.UTF8.GetBytes(manifest.Id + "\n"));
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
            Directory.Delete(deleting, recursive: true);
            removed.Add(id);
            StorageLog.Retired(logger, id);
        }

        if (removed.Count > 0)
        {
            NativeFile.FsyncDirectory(layout.JobDirectory);
        }

        return removed;
    }

    public string? ReadLatestId()
    {
        try
        {
            var id = File.ReadAllText(layout.LatestFile).Trim();
            return id.Length == 0 ? null : id;
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// The checkpoint to resume from: the one LATEST names if it validates, else the newest other
    /// committed checkpoint that does. A directory that fails validation is never returned.
    /// </summary>
    /// <param name="onInvalid">Told of each checkpoint rejected, and why.</param>
    public CommittedCheckpoint? FindLatestValid(bool verifyHashes, int bufferSize, Action<string, string>? onInvalid, CancellationToken cancellationToken)
    {
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
            var problem = Validate(id, verifyHashes, bufferSize, cancellationToken, out var checkpoint);
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
    internal string? Validate(string id, bool verifyHashes, int bufferSize, CancellationToken cancellationToken, out CommittedCheckpoint? checkpoint)
    {
        checkpoint = null;
        var directory = layout.CommittedDirectory(id);
        if (!CheckpointLayout.IsCommittedName(id) || id.Contains('/') || !Directory.Exists(directory))
        {
            return "the directory does not exist";
        }

        CheckpointManifest manifest;
        try
        {
            manifest = CheckpointManifest.Read(Path.Combine(directory, CheckpointLayout.ManifestFileName));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidDataException)
        {
            return e is System.Text.Json.JsonException or InvalidDataException
                ? "the manifest is not valid JSON of the checkpoint format"
                : $"no readable manifest: {StorageErrors.Reason(e)}";
        }

        if (manifest.FormatVersion != CheckpointManifest.CurrentFormatVersion)
        {
            return $"manifest format version {manifest.FormatVersion} is not {CheckpointManifest.CurrentFormatVersion}";
        }

        if (manifest.Files is null || manifest.Ranks is null)
        {
            return "manifest lacks its file or rank list";
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

            var problem = ValidateFile(Path.Combine(directory, relative), file, verifyHashes, bufferSize, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
        }

        checkpoint = new CommittedCheckpoint(directory, manifest);
        return null;
    }

    private static string? ValidateFile(string path, ManifestFile file, bool verifyHashes, int bufferSize, CancellationToken cancellationToken)
    {
        try
        {
            if (NativeFile.GetKind(path) != FileKind.Regular)
            {
                return $"file {UserText.Quote(file.Path)} is missing";
            }

            var size = new FileInfo(path).Length;
            if (size != file.Size)
            {
                return $"file {UserText.Quote(file.Path)} has {size} bytes, the manifest says {file.Size}";
            }

            if (verifyHashes)
            {
                var actual = FileHasher.HashFromStorage(path, bufferSize, cancellationToken: cancellationToken);
                if (actual != file.Xxh128)
                {
                    return $"file {UserText.Quote(file.Path)} hashes to {actual}, the manifest says {UserText.Quote(file.Xxh128)}";
                }
            }

            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // An unreadable file makes the checkpoint unusable, not the resume impossible: the next one may do.
            return $"file {UserText.Quote(file.Path)} cannot be read: {StorageErrors.Reason(e)}";
        }
    }

    private static void WriteDurably(string path, ReadOnlySpan<byte> content)
    {
        using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.None);
        RandomAccess.Write(handle, content, 0);
        NativeFile.Fsync(handle, path);
    }
}
