using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// The few POSIX calls .NET does not expose with the guarantees a checkpoint needs: an fsync whose
/// error is reported (FileStream swallows close() errors), fsync of a directory (so a rename is
/// durable), dropping a file's pages from the client cache (so read-back verification reads what the
/// server holds, not what we just wrote), the type of a path without following symlinks, opening a
/// file without passing through any symlink, and removing a tree whatever bytes its names hold.
/// </summary>
internal static partial class NativeFile
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxSize = 0x200;
    private const int PosixFadvDontNeed = 4;
    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;
    private const int OCloExec = 0x80000;
    private const int ONonBlock = 0x800;
    private const int ONoFollow = 0x20000;
    private const int AtEmptyPath = 0x1000;
    private const ulong ResolveNoMagicLinks = 0x02;
    private const ulong ResolveNoSymlinks = 0x04;
    private const ulong ResolveBeneath = 0x08;
    private const long SysOpenat2 = 437;
    private const int AtRemoveDir = 0x200;
    private const int ENoEnt = 2;
    private const int EIsDir = 21;

    /// <summary>Deeper trees are left in place: each level holds a descriptor and a stack frame.</summary>
    private const int MaxDeleteDepth = 128;

    public static void Fsync(SafeFileHandle handle, string pathForErrors)
    {
        if (fsync(handle) != 0)
        {
            throw ErrorFor("fsync", pathForErrors);
        }
    }

    public static void FsyncDirectory(string directory)
    {
        var fd = open(directory, ORdOnly | ODirectory | OCloExec);
        if (fd < 0)
        {
            throw ErrorFor("open directory", directory);
        }

        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        // Some filesystems refuse fsync on a directory with EINVAL; they make renames durable anyway.
        if (fsync(handle) != 0 && Marshal.GetLastPInvokeError() != 22)
        {
            throw ErrorFor("fsync directory", directory);
        }
    }

    /// <summary>Asks the kernel to drop the file's cached pages; they must be clean (fsync first).</summary>
    public static void DropCache(SafeFileHandle handle, string pathForErrors)
    {
        // posix_fadvise returns the error number instead of setting errno.
        var error = posix_fadvise(handle, 0, 0, PosixFadvDontNeed);
        if (error != 0)
        {
            throw new IOException($"posix_fadvise(DONTNEED) on '{pathForErrors}' failed: {new Win32Exception(error).Message}");
        }
    }

    /// <summary>
    /// Opens <paramref name="relativePath"/> for reading without ever leaving <paramref name="root"/>:
    /// the kernel refuses symlinks and '..' that escape it (openat2 RESOLVE_BENEATH), so a trainer
    /// cannot swap a validated file for a link to the sidecar's secrets between report and copy.
    /// O_NONBLOCK keeps a file swapped for a FIFO from blocking the open; the caller checks the type.
    /// </summary>
    public static SafeFileHandle OpenBeneath(string root, string relativePath)
    {
        var rootFd = open(root, ORdOnly | ODirectory | OCloExec);
        if (rootFd < 0)
        {
            throw ErrorFor("open staging directory", root);
        }

        using var rootHandle = new SafeFileHandle(rootFd, ownsHandle: true);
        var how = new OpenHow { Flags = ORdOnly | OCloExec | ONonBlock | ONoFollow, Mode = 0, Resolve = ResolveBeneath | ResolveNoMagicLinks };
        var fd = (int)syscall_openat2(SysOpenat2, rootHandle, relativePath, ref how, (nuint)Marshal.SizeOf<OpenHow>());
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == 18 /* EXDEV */ || errno == 40 /* ELOOP */)
            {
                throw new IOException($"'{relativePath}' leads out of the staging directory", errno);
            }

            throw ErrorFor("openat2", Path.Combine(root, relativePath));
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        Span<byte> statx = stackalloc byte[256];
        if (statx_fd(handle, "", AtEmptyPath, StatxType | StatxSize, ref MemoryMarshal.GetReference(statx)) != 0)
        {
            handle.Dispose();
            throw ErrorFor("statx", relativePath);
        }

        if ((MemoryMarshal.Read<ushort>(statx[28..]) & 0xF000) != 0x8000)
        {
            handle.Dispose();
            throw new IOException($"'{relativePath}' is no longer a regular file");
        }

        return handle;
    }

    public static FileKind GetKind(string path)
    {
        Span<byte> statx = stackalloc byte[256];
        if (statx_call(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxSize, ref MemoryMarshal.GetReference(statx)) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == 2 || errno == 20 ? FileKind.Missing : throw ErrorFor("statx", path);
        }

        return KindOf(statx);
    }

    /// <summary>A directory by path, following symlinks: for directories the sidecar's settings name.</summary>
    public static SafeFileHandle OpenDirectory(string path)
    {
        var fd = open(path, ORdOnly | ODirectory | OCloExec | ONonBlock);
        if (fd < 0)
        {
            throw ErrorFor("open directory", path);
        }

        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>
    /// Opens <paramref name="relativePath"/> beneath <paramref name="directory"/> the way storage
    /// content is opened: no symlink anywhere on the way (RESOLVE_NO_SYMLINKS) and never out of the
    /// directory, never blocking on a FIFO (O_NONBLOCK); type and size come from the open descriptor,
    /// so they describe what will be read, not what the path named a moment earlier.
    /// </summary>
    /// <exception cref="IOException">HResult is the errno: ELOOP for a symlink on the way, ENOENT when nothing is there.</exception>
    public static SafeFileHandle OpenWithoutSymlinks(SafeFileHandle directory, string relativePath, bool expectDirectory, out FileKind kind, out long size)
    {
        var flags = ORdOnly | OCloExec | ONonBlock | ONoFollow | (expectDirectory ? ODirectory : 0);
        var how = new OpenHow { Flags = (ulong)flags, Mode = 0, Resolve = ResolveBeneath | ResolveNoSymlinks | ResolveNoMagicLinks };
        var fd = (int)syscall_openat2(SysOpenat2, directory, relativePath, ref how, (nuint)Marshal.SizeOf<OpenHow>());
        if (fd < 0)
        {
            throw ErrorFor("openat2", relativePath);
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        Span<byte> statx = stackalloc byte[256];
        if (statx_fd(handle, "", AtEmptyPath, StatxType | StatxSize, ref MemoryMarshal.GetReference(statx)) != 0)
        {
            var error = ErrorFor("statx", relativePath);
            handle.Dispose();
            throw error;
        }

        kind = KindOf(statx);
        // struct statx: stx_size is the u64 at offset 40.
        size = MemoryMarshal.Read<long>(statx[40..]);
        return handle;
    }

    /// <summary>
    /// The names in a directory as the bytes the filesystem holds. .NET's own enumeration turns a
    /// name that is not UTF-8 into one that does not exist, which can then be neither opened nor deleted.
    /// </summary>
    public static List<byte[]> ReadNames(SafeFileHandle directory, string pathForErrors)
    {
        var names = new List<byte[]>();
        var buffer = new byte[32 * 1024];
        while (true)
        {
            var filled = (long)getdents64(directory, ref buffer[0], (nuint)buffer.Length);
            if (filled < 0)
            {
                throw ErrorFor("getdents64", pathForErrors);
            }

            if (filled == 0)
            {
                return names;
            }

            // struct linux_dirent64: d_reclen is the u16 at offset 16, d_name the NUL-terminated bytes from 19.
            for (var offset = 0; offset < filled;)
            {
                var recordLength = MemoryMarshal.Read<ushort>(buffer.AsSpan(offset + 16));
                var name = buffer.AsSpan(offset + 19, recordLength - 19);
                name = name[..name.IndexOf((byte)0)];
                if (!name.SequenceEqual("."u8) && !name.SequenceEqual(".."u8))
                {
                    names.Add(name.ToArray());
                }

                offset += recordLength;
            }
        }
    }

    /// <summary>
    /// Removes <paramref name="name"/> from <paramref name="directory"/> and, when it is a directory,
    /// all it holds: through directory descriptors and raw names, so any name can be removed, and never
    /// following a symlink (the link goes, not what it points to). Already gone counts as removed.
    /// </summary>
    public static void DeleteEntry(SafeFileHandle directory, ReadOnlySpan<byte> name, string pathForErrors) =>
        DeleteEntry(directory, name, pathForErrors, depth: 0);

    /// <summary><see cref="DeleteEntry(SafeFileHandle, ReadOnlySpan{byte}, string)"/> by path.</summary>
    public static void DeleteTree(string path)
    {
        using var parent = OpenDirectory(Path.GetDirectoryName(path)!);
        DeleteEntry(parent, Encoding.UTF8.GetBytes(Path.GetFileName(path)), path);
    }

    private static void DeleteEntry(SafeFileHandle directory, ReadOnlySpan<byte> name, string pathForErrors, int depth)
    {
        var terminated = new byte[name.Length + 1];
        name.CopyTo(terminated);
        // unlink refuses a directory with EISDIR: that, not a prior stat, says whether to descend.
        if (unlinkat(directory, ref terminated[0], 0) == 0)
        {
            return;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno == ENoEnt)
        {
            return;
        }

        if (errno != EIsDir)
        {
            throw ErrorFor("unlink", pathForErrors);
        }

        if (depth >= MaxDeleteDepth)
        {
            throw new IOException($"'{pathForErrors}' is nested more than {MaxDeleteDepth} directories deep; it is left in place");
        }

        var fd = openat(directory, ref terminated[0], ORdOnly | ODirectory | ONoFollow | OCloExec | ONonBlock);
        if (fd < 0)
        {
            throw ErrorFor("open directory", pathForErrors);
        }

        using (var child = new SafeFileHandle(fd, ownsHandle: true))
        {
            foreach (var entry in ReadNames(child, pathForErrors))
            {
                DeleteEntry(child, entry, pathForErrors + "/" + Encoding.UTF8.GetString(entry), depth + 1);
            }
        }

        if (unlinkat(directory, ref terminated[0], AtRemoveDir) != 0 && Marshal.GetLastPInvokeError() != ENoEnt)
        {
            throw ErrorFor("remove directory", pathForErrors);
        }
    }

    /// <summary>struct statx: stx_mode is the u16 at offset 28; the file type is its top four bits.</summary>
    private static FileKind KindOf(ReadOnlySpan<byte> statx) => (MemoryMarshal.Read<ushort>(statx[28..]) & 0xF000) switch
    {
        0x8000 => FileKind.Regular,
        0x4000 => FileKind.Directory,
        0xA000 => FileKind.Symlink,
        _ => FileKind.Special,
    };

    private static IOException ErrorFor(string call, string path)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new IOException($"{call} on '{path}' failed: {new Win32Exception(errno).Message} (errno {errno})", errno);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(SafeFileHandle fd);

    // glibc has no openat2 wrapper; the system call number is the same on every architecture.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial long syscall_openat2(long number, SafeFileHandle dirfd, string path, ref OpenHow how, nuint size);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx_fd(SafeFileHandle dirfd, string path, int flags, uint mask, ref byte buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    // Raw names (NUL-terminated bytes) rather than strings: a name need not be UTF-8.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int openat(SafeFileHandle dirfd, ref byte path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unlinkat(SafeFileHandle dirfd, ref byte path, int flags);

    // glibc has wrapped getdents64 since 2.30; readdir would hand back a pointer into its own buffer.
    [LibraryImport("libc", SetLastError = true)]
    private static partial nint getdents64(SafeFileHandle fd, ref byte buffer, nuint count);

    [LibraryImport("libc")]
    private static partial int posix_fadvise(SafeFileHandle fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx_call(int dirfd, string path, int flags, uint mask, ref byte buffer);
}

internal enum FileKind
{
    Missing,
    Regular,
    Directory,
    Symlink,
    Special,
}
