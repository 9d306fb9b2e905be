using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// The staging volume (CHECKPOINT_STAGING_DIR), held open by a directory descriptor from start to
/// exit. The trainer shares the volume and is not trusted: it may replace any path in it with a
/// symlink at any moment. So each checkpoint's directory is created and opened relative to this
/// descriptor and held open while the checkpoint lasts, and staged files are reached only from that
/// descriptor, never by path.
/// </summary>
public sealed class StagingRoot : IDisposable
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly SafeFileHandle _handle;
    private readonly ILogger<StagingRoot> _logger;

    /// <param name="path">Trusted (the sidecar's configuration): a symlink here is the operator's choice and is followed once.</param>
    public StagingRoot(string path, ILogger<StagingRoot> logger)
    {
        Path = path;
        _logger = logger;
        _handle = NativeFile.OpenDirectory(path);
    }

    public string Path { get; }

    /// <summary>Creates <c>&lt;staging&gt;/&lt;checkpointId&gt;/</c> for the trainers to dump into and opens it.</summary>
    /// <exception cref="StagingUnavailableException">
    /// The volume is read-only or full, or the name is taken (by anything, a dangling symlink included).
    /// </exception>
    public StagingDirectory CreateCheckpointDirectory(string checkpointId)
    {
        if (!CheckpointLayout.IsCommittedName(checkpointId))
        {
            throw new ArgumentException($"'{checkpointId}' is not a checkpoint id", nameof(checkpointId));
        }

        var path = System.IO.Path.Combine(Path, checkpointId);
        var error = NativeFile.CreateDirectoryAt(_handle, checkpointId);
        if (error != 0)
        {
            throw new StagingUnavailableException(path, StorageErrors.Reason(error), error);
        }

        try
        {
            return new StagingDirectory(checkpointId, path, NativeFile.OpenDirectoryAt(_handle, checkpointId, path), _handle);
        }
        catch (IOException e)
        {
            // Swapped between mkdir and open; O_NOFOLLOW refused a symlink (ELOOP) rather than follow it.
            RemoveQuietly(checkpointId, path);
            throw new StagingUnavailableException(path, e.HResult == 40
                ? "it was replaced by a symlink as soon as it was created"
                : StorageErrors.Reason(e), StorageErrors.Errno(e));
        }
    }

    /// <summary>
    /// Removes a checkpoint's directory with everything in it, then closes its descriptor. Whatever
    /// the name holds now is removed: a symlink put in the directory's place is unlinked, never followed.
    /// </summary>
    /// <exception cref="IOException">Something in it could not be removed.</exception>
    public void Remove(StagingDirectory directory)
    {
        try
        {
            NativeFile.RemoveTreeAt(_handle, Encoding.UTF8.GetBytes(directory.CheckpointId), directory.Path);
        }
        finally
        {
            directory.Dispose();
        }
    }

    /// <summary>
    /// Removes the checkpoint directories a predecessor left behind (it was killed before it could):
    /// only directories named like the checkpoint ids the sidecar creates, never a symlink or anything
    /// else. Best effort: what cannot be removed is logged and left. Call it before this process has
    /// created a checkpoint directory of its own.
    /// </summary>
    /// <returns>How many directories were removed.</returns>
    public int SweepLeftovers()
    {
        List<byte[]> names;
        try
        {
            names = NativeFile.ListDirectory(_handle, Path);
        }
        catch (IOException e)
        {
            StorageLog.StagingSweepFailed(_logger, Path, e.Message);
            return 0;
        }

        var swept = 0;
        foreach (var raw in names)
        {
            if (DecodeStrictly(raw) is not { } name || !CheckpointLayout.IsCommittedName(name))
            {
                continue;
            }

            var path = System.IO.Path.Combine(Path, name);
            try
            {
                if (NativeFile.StatusAt(_handle, name, path)?.Kind != FileKind.Directory)
                {
                    continue;
                }

                NativeFile.RemoveTreeAt(_handle, raw, path);
                StorageLog.Swept(_logger, path);
                swept++;
            }
            catch (IOException e)
            {
                StorageLog.StagingSweepFailed(_logger, path, e.Message);
            }
        }

        return swept;
    }

    public void Dispose() => _handle.Dispose();

    private void RemoveQuietly(string checkpointId, string path)
    {
        try
        {
            NativeFile.RemoveTreeAt(_handle, Encoding.UTF8.GetBytes(checkpointId), path);
        }
        catch (IOException e)
        {
            StorageLog.StagingSweepFailed(_logger, path, e.Message);
        }
    }

    /// <summary>A name that is not UTF-8 is not one of the sidecar's ids.</summary>
    private static string? DecodeStrictly(byte[] name)
    {
        try
        {
            return StrictUtf8.GetString(name);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}

/// <summary>One checkpoint's staging directory, held open from its creation until the checkpoint ends.</summary>
public sealed class StagingDirectory : IDisposable
{
    private readonly SafeFileHandle _root;

    internal StagingDirectory(string checkpointId, string path, SafeFileHandle handle, SafeFileHandle root)
    {
        CheckpointId = checkpointId;
        Path = path;
        Handle = handle;
        _root = root;
    }

    public string CheckpointId { get; }

    /// <summary>Where the trainers write (the dump request names it); the sidecar itself never opens it by path.</summary>
    public string Path { get; }

    internal SafeFileHandle Handle { get; }

    /// <summary>
    /// Why <see cref="Path"/> no longer names the directory held open (removed, replaced by a
    /// symlink or by another directory), or null while it does: files written through a replaced
    /// path are not where the sidecar reads.
    /// </summary>
    internal string? DescribeReplacement()
    {
        var now = NativeFile.StatusAt(_root, CheckpointId, Path);
        var held = NativeFile.Status(Handle, Path);
        return now switch
        {
            null => "was removed after the sidecar created it",
            { Kind: FileKind.Symlink } => "was replaced by a symlink after the sidecar created it; symlinks are refused",
            { } other when other.Device != held.Device || other.Inode != held.Inode =>
                "was replaced by another directory after the sidecar created it",
            _ => null,
        };
    }

    public void Dispose() => Handle.Dispose();
}
