using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Opens and reads what is on the shared storage, which anyone may have written: another pod or job,
/// a person, a broken server (design.md, "Trust boundary"). Nothing is reached through a symlink, a
/// FIFO never blocks the open, only a regular file is read and never more than the caller's cap, so
/// a hostile entry becomes a readable "not valid" instead of a hang, a path outside the job directory
/// or a blown memory limit.
/// </summary>
internal static class StorageFile
{
    /// <summary>LATEST holds one checkpoint id, a few dozen bytes.</summary>
    public const int LatestPointerLimit = 4 << 10;

    /// <summary>Room for well over a hundred thousand files.</summary>
    public const int ManifestLimit = 16 << 20;

    /// <summary>A record is a few hundred bytes; its error message is the only free text.</summary>
    public const int FlushRecordLimit = 1 << 20;

    private const int ENoEnt = 2;
    private const int ENxio = 6;
    private const int EXDev = 18;
    private const int ENotDir = 20;
    private const int ENameTooLong = 36;
    private const int ELoop = 40;

    /// <summary>
    /// A directory the sidecar names itself (the job directory, from its settings): symlinks on the
    /// way are the operator's mounts and are followed.
    /// </summary>
    /// <returns>null when it does not exist.</returns>
    public static SafeFileHandle? OpenDirectoryIfExists(string path)
    {
        try
        {
            return NativeFile.OpenDirectory(path);
        }
        catch (IOException e) when (e.HResult is ENoEnt or ENotDir)
        {
            return null;
        }
    }

    /// <summary>A directory inside <paramref name="parent"/>, such as a checkpoint inside the job directory.</summary>
    /// <exception cref="StorageEntryException">It is missing, a symlink, or not a directory.</exception>
    public static SafeFileHandle OpenDirectory(SafeFileHandle parent, string name)
    {
        var handle = Open(parent, name, expectDirectory: true, out var kind, out _);
        if (kind != FileKind.Directory)
        {
            handle.Dispose();
            throw new StorageEntryException($"'{name}' is {Describe(kind)}, not a directory");
        }

        return handle;
    }

    /// <param name="relativePath">'/'-separated, beneath <paramref name="directory"/>.</param>
    /// <param name="size">The size of what the handle reads, from the open descriptor.</param>
    /// <exception cref="StorageEntryException">It is missing, reached through a symlink, or not a regular file.</exception>
    public static SafeFileHandle OpenRegular(SafeFileHandle directory, string relativePath, out long size)
    {
        var handle = Open(directory, relativePath, expectDirectory: false, out var kind, out size);
        if (kind != FileKind.Regular)
        {
            handle.Dispose();
            throw new StorageEntryException($"'{relativePath}' is {Describe(kind)}, not a regular file");
        }

        return handle;
    }

    /// <summary>The whole content of a regular file of at most <paramref name="limit"/> bytes.</summary>
    /// <exception cref="StorageEntryException">It is missing, not a regular file, or larger than the limit.</exception>
    /// <exception cref="IOException">Reading failed.</exception>
    public static ReadOnlyMemory<byte> ReadAll(SafeFileHandle directory, string relativePath, int limit)
    {
        using var handle = OpenRegular(directory, relativePath, out var size);
        // A negative size is what a broken server's 2^63 and more looks like.
        if (size < 0 || size > limit)
        {
            throw TooLarge(relativePath, limit);
        }

        // One byte more than allowed tells a file that grew since the fstat from one that did not.
        var buffer = new byte[(int)size + 1];
        var length = 0;
        while (true)
        {
            if (length == buffer.Length)
            {
                if (length > limit)
                {
                    throw TooLarge(relativePath, limit);
                }

                Array.Resize(ref buffer, (int)Math.Min(2L * buffer.Length, limit + 1L));
            }

            var read = RandomAccess.Read(handle, buffer.AsSpan(length), length);
            if (read == 0)
            {
                return buffer.AsMemory(0, length);
            }

            length += read;
        }
    }

    /// <summary><see cref="ReadAll"/> of a file directly in <paramref name="directory"/>.</summary>
    /// <returns>null when the directory or the file does not exist.</returns>
    public static ReadOnlyMemory<byte>? ReadAllIfExists(string directory, string name, int limit)
    {
        using var handle = OpenDirectoryIfExists(directory);
        if (handle is null)
        {
            return null;
        }

        try
        {
            return ReadAll(handle, name, limit);
        }
        catch (StorageEntryException e) when (e.IsMissing)
        {
            return null;
        }
    }

    private static SafeFileHandle Open(SafeFileHandle directory, string relativePath, bool expectDirectory, out FileKind kind, out long size)
    {
        try
        {
            return NativeFile.OpenWithoutSymlinks(directory, relativePath, expectDirectory, out kind, out size);
        }
        catch (IOException e) when (e is not StorageEntryException)
        {
            throw e.HResult switch
            {
                ENoEnt => new StorageEntryException($"'{relativePath}' does not exist", isMissing: true),
                ENotDir when expectDirectory => new StorageEntryException($"'{relativePath}' is not a directory"),
                ENotDir => new StorageEntryException($"'{relativePath}' does not exist: a part of its path is not a directory", isMissing: true),
                ELoop => new StorageEntryException($"'{relativePath}' is a symlink or is reached through one"),
                EXDev => new StorageEntryException($"'{relativePath}' leads out of its directory"),
                ENameTooLong => new StorageEntryException($"'{Shorten(relativePath)}' is too long a path"),
                ENxio => new StorageEntryException($"'{relativePath}' is a socket or device, not a regular file"),
                _ => new StorageEntryException(e.Message),
            };
        }
    }

    private static StorageEntryException TooLarge(string relativePath, int limit) =>
        new($"'{relativePath}' is larger than the {limit} bytes it may hold; it is not read");

    private static string Describe(FileKind kind) => kind switch
    {
        FileKind.Directory => "a directory",
        FileKind.Symlink => "a symlink",
        FileKind.Regular => "a regular file",
        _ => "a FIFO, socket or device",
    };

    private static string Shorten(string path) => path.Length <= 80 ? path : string.Concat(path.AsSpan(0, 80), "...");
}
