using System.Text;
using Checkpoint.Sidecar.Storage.JobWide;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// The job's directory on shared storage, as resume and start-up see it: finds the newest valid
/// checkpoint (job-wide steps, then checkpoints of format 1) and sweeps what a crash left behind.
/// Writing is <see cref="ICheckpointTarget"/>'s. Only POSIX behaviour
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
            // LATEST.tmp (format 1) or LATEST.<pod>.tmp (job-wide): a pointer write that never finished.
            var isLatestTemp = name.AsSpan().SequenceEqual(latestTempName)
                || (name.AsSpan().StartsWith(LatestTempPrefix) && name.AsSpan().EndsWith(TempSuffix));
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

    private static readonly byte[] LatestTempPrefix = Encoding.UTF8.GetBytes(CheckpointLayout.LatestFileName + ".");

    private static readonly byte[] TempSuffix = ".tmp"u8.ToArray();

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
    /// <param name="verifyHashes">Hash every file (CHECKPOINT_VERIFY_ON_RESUME); else only those the flush did not read back.</param>
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

        // Without hashes on resume, the files nobody has read back from storage are still hashed.
        Func<ManifestFile, bool> hash = verifyHashes ? HashAll : f => !WasReadBack(f);

        // Job-wide steps first, newest first: the truth is the newest step whose manifest and shards
        // verify, whatever LATEST says. A step without a manifest is in progress or failed: not a
        // checkpoint, and not worth a warning. Checkpoints of format 1 predate every step.
        foreach (var (name, step) in layout.StepCandidates())
        {
            cancellationToken.ThrowIfCancellationRequested();
            onProgress?.Invoke();
            if (TryValidate(name, () => ValidateStep(jobDirectory, name, step, hash, bufferSize, onProgress, cancellationToken), onInvalid) is { } found)
            {
                return found;
            }
        }

        var latest = ReadLatestId();
        var candidates = layout.CommittedCandidates().OrderDescending(StringComparer.Ordinal).ToList();
        if (latest is not null && CheckpointLayout.ParseStepName(latest) is null)
        {
            candidates.Remove(latest);
            candidates.Insert(0, latest);
        }

        foreach (var id in candidates)
        {
            cancellationToken.ThrowIfCancellationRequested();
            onProgress?.Invoke();
            if (TryValidate(id, () => Validate(jobDirectory, id, hash, bufferSize, onProgress, cancellationToken), onInvalid) is { } found)
            {
                return found;
            }
        }

        return null;
    }

    /// <summary>
    /// Whatever goes wrong while checking a candidate (a FIFO, a symlink, a null in the manifest, an I/O
    /// error) makes it not valid: logged, counted, and the next is tried.
    /// </summary>
    private CommittedCheckpoint? TryValidate(string name, Func<Validation> validate, Action<string, string>? onInvalid)
    {
        var result = Attempt(validate);
        if (result.Problem is { } problem)
        {
            StorageLog.InvalidCheckpoint(logger, name, problem);
            onInvalid?.Invoke(name, problem);
        }

        return result.Checkpoint;
    }

    private static Validation Attempt(Func<Validation> validate)
    {
        try
        {
            return validate();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return Validation.Invalid(StorageErrors.Describe(e));
        }
    }

    /// <summary>
    /// Checks one checkpoint of the job by name (a step's, or a format-1 id) exactly as resume checks a
    /// candidate, for the operator's <c>list</c> and <c>verify</c>; nothing is logged.
    /// </summary>
    /// <exception cref="IOException">The job directory cannot be opened.</exception>
    internal Validation Check(string name, bool verifyHashes, int bufferSize, CancellationToken cancellationToken)
    {
        using var jobDirectory = NativeFile.OpenDirectory(layout.JobDirectory);
        Func<ManifestFile, bool> hash = verifyHashes ? HashAll : HashNone;
        return Attempt(() => CheckpointLayout.ParseStepName(name) is { } step
            ? ValidateStep(jobDirectory, name, step, hash, bufferSize, onProgress: null, cancellationToken)
            : Validate(jobDirectory, name, hash, bufferSize, onProgress: null, cancellationToken));
    }

    private static readonly Func<ManifestFile, bool> HashAll = _ => true;

    private static readonly Func<ManifestFile, bool> HashNone = _ => false;

    /// <summary>What checking one candidate found: a checkpoint, a problem, or neither (a step still in progress).</summary>
    internal readonly record struct Validation(CommittedCheckpoint? Checkpoint, string? Problem)
    {
        public static Validation Invalid(string problem) => new(null, problem);

        public static Validation NotCommitted => default;
    }

    /// <summary>A job-wide step: its manifest covers the world exactly once, and every shard's files check out.</summary>
    /// <exception cref="IOException">An entry of the step cannot be read as what it must be.</exception>
    private Validation ValidateStep(
        SafeFileHandle jobDirectory, string name, long step, Func<ManifestFile, bool> hash, int bufferSize, Action? onProgress, CancellationToken cancellationToken)
    {
        using var directory = StorageFile.OpenDirectory(jobDirectory, name);
        if (NativeFile.StatusAt(directory, CheckpointLayout.ManifestFileName, layout.StepDirectory(step)) is null)
        {
            return Validation.NotCommitted;
        }

        JobManifest manifest;
        try
        {
            manifest = JobManifest.FromUtf8Json(StorageFile.ReadAll(directory, CheckpointLayout.ManifestFileName, StorageFile.ManifestLimit).Span);
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or InvalidDataException)
        {
            return Validation.Invalid($"no readable job manifest: {StorageErrors.Describe(e)}");
        }

        if (manifest.ProblemAsManifestOf(name, step) is { } problem)
        {
            return Validation.Invalid(problem);
        }

        var stepDirectory = layout.StepDirectory(step);
        foreach (var shard in manifest.Shards)
        {
            if (!IsShardDirectoryName(shard.Directory))
            {
                return Validation.Invalid($"shard {UserText.Quote(shard.Shard)} names directory {UserText.Quote(shard.Directory)}, which is not one of its own");
            }

            using var shardDirectory = StorageFile.OpenDirectory(directory, shard.Directory);
            if (ValidateFiles(shardDirectory, Path.Combine(stepDirectory, shard.Directory), shard.Files, hash, bufferSize, onProgress, cancellationToken) is { } fileProblem)
            {
                return Validation.Invalid($"shard {UserText.Quote(shard.Shard)}: {fileProblem}");
            }
        }

        return new Validation(CommittedCheckpoint.FromJobManifest(stepDirectory, manifest), null);
    }

    /// <summary>A single name beneath the step that is neither the manifest, the shards' folder, nor hidden.</summary>
    private static bool IsShardDirectoryName(string name) =>
        name.Length > 0 && !name.StartsWith('.') && !name.Contains('/', StringComparison.Ordinal) && !name.Contains('\\', StringComparison.Ordinal)
        && name != CheckpointLayout.ShardsDirectoryName && name != CheckpointLayout.ManifestFileName;

    /// <returns>Why the checkpoint is not valid, or null when it is.</returns>
    /// <exception cref="IOException">An entry of the checkpoint cannot be read as what it must be.</exception>
    private Validation Validate(
        SafeFileHandle jobDirectory, string id, Func<ManifestFile, bool> hash, int bufferSize, Action? onProgress, CancellationToken cancellationToken)
    {
        if (!CheckpointLayout.IsCommittedName(id))
        {
            return Validation.Invalid("it is not the name of a checkpoint");
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
            return Validation.Invalid($"no readable manifest: {StorageErrors.Describe(e)}");
        }

        if (manifest.FormatVersion != CheckpointManifest.CurrentFormatVersion)
        {
            return Validation.Invalid($"manifest format version {manifest.FormatVersion} is not {CheckpointManifest.CurrentFormatVersion}");
        }

        if (manifest.Id != id)
        {
            return Validation.Invalid($"manifest names checkpoint {UserText.Quote(manifest.Id)}");
        }

        var problem = ValidateFiles(directory, layout.CommittedDirectory(id), manifest.Files, hash, bufferSize, onProgress, cancellationToken);
        return problem is null
            ? new Validation(CommittedCheckpoint.FromFormat1(layout.CommittedDirectory(id), manifest), null)
            : Validation.Invalid(problem);
    }

    /// <returns>Why a file does not match its manifest entry, or null when all do.</returns>
    private static string? ValidateFiles(
        SafeFileHandle directory, string directoryPath, IReadOnlyList<ManifestFile> files, Func<ManifestFile, bool> hash, int bufferSize, Action? onProgress,
        CancellationToken cancellationToken)
    {
        foreach (var file in files)
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
            var problem = ValidateFile(directory, directoryPath, relative, file, hash(file) ? bufferSize : null, onProgress, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether the flush read the file back from storage. A file committed on its write-side hash
    /// (a deadline too close, or CHECKPOINT_VERIFY=write-hash) is hashed on resume even when
    /// CHECKPOINT_VERIFY_ON_RESUME is off: nobody has yet read its bytes from the server. A manifest
    /// older than the field says nothing, and is checked as before (size only).
    /// </summary>
    private static bool WasReadBack(ManifestFile file) => file.Verification is null or ManifestFile.ReadBack;

    /// <param name="hashBufferSize">null: size only.</param>
    /// <returns>Why the file does not match its manifest entry, or null when it does.</returns>
    private static string? ValidateFile(
        SafeFileHandle directory, string directoryPath, string relative, ManifestFile file, int? hashBufferSize, Action? onProgress,
        CancellationToken cancellationToken)
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

            var path = Path.Combine(directoryPath, relative);
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

}
