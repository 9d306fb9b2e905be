using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// The few POSIX calls .NET does not expose with the guarantees a checkpoint needs: an fsync whose
/// error is reported (FileStream swallows close() errors), fsync of a directory (so a rename is
/// durable), dropping a file's pages from the client cache (so read-back verification reads what the
/// server holds, not what we just wrote), the type of a path without following symlinks, and
/// everything that must happen relative to a held directory descriptor rather than by path: staging
/// is shared with the untrusted trainer, which may swap any path for a symlink at any moment, and
/// storage content is written by other pods, jobs and people (no symlink followed, no FIFO blocked
/// on, any name removable whatever bytes it holds).
/// </summary>
internal static partial class NativeFile
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxMtime = 0x40;
    private const uint StatxCtime = 0x80;
    private const uint StatxIno = 0x100;
    private const uint StatxSize = 0x200;
    private const int PosixFadvDontNeed = 4;
    private const int ORdOnly = 0;
    private const int OCloExec = 0x80000;
    private const int ONonBlock = 0x800;
    private const int OPath = 0x200000;
    private const int AtEmptyPath = 0x1000;
    private const int AtRemoveDir = 0x200;
    private const ulong ResolveNoMagicLinks = 0x02;
    private const ulong ResolveNoSymlinks = 0x04;
    private const ulong ResolveBeneath = 0x08;
    private const int ENoEnt = 2;
    private const int EExist = 17;
    private const int ENoSys = 38;
    private const int EOpNotSupp = 95;
    private const int EPerm = 1;
    private const int ENotDir = 20;
    private const int EIsDir = 21;

    /// <summary>
    /// Removal recurses once per level and holds a descriptor per level; a trainer could nest
    /// directories deeper than any checkpoint needs to exhaust either.
    /// </summary>
    private const int MaxRemovalDepth = 64;
    private const long SysOpenat2 = 437;
    private const int FallocFlKeepSize = 0x1;
    private const int EIntr = 4;
    private const int EFBig = 27;
    private const int ENoSpc = 28;
    private const int EDQuot = 122;
    private const int EInval = 22;
    private const int FGetFl = 3;
    private const int FSetFl = 4;

    private static readonly OpenFlags Flags = OpenFlagsFor(RuntimeInformation.ProcessArchitecture);
    private static readonly int ODirectory = Flags.Directory;
    private static readonly int ONoFollow = Flags.NoFollow;
    private static readonly int ODirect = Flags.Direct;

    /// <summary>
    /// The open flags whose values differ by architecture (asm/fcntl.h): the image is built for
    /// linux/amd64 and linux/arm64, and an x86-64 O_DIRECTORY (0x10000) is O_DIRECT on arm64, so a
    /// wrong value would silently open directories with direct I/O and follow symlinks.
    /// </summary>
    internal static OpenFlags OpenFlagsFor(Architecture architecture) => architecture is Architecture.Arm64 or Architecture.Arm
        ? new OpenFlags(Directory: 0x4000, NoFollow: 0x8000, Direct: 0x10000)
        : new OpenFlags(Directory: 0x10000, NoFollow: 0x20000, Direct: 0x4000);

    /// <summary>O_DIRECTORY, O_NOFOLLOW and O_DIRECT for one architecture.</summary>
    internal readonly record struct OpenFlags(int Directory, int NoFollow, int Direct);

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
            throw new IOException($"posix_fadvise(DONTNEED) on '{pathForErrors}' failed: {Describe(error)}");
        }
    }

    /// <summary>
    /// Opens a directory named by a trusted path (the sidecar's own configuration), so that what
    /// lies beneath it is from then on reached through the descriptor, never by path.
    /// </summary>
    public static SafeFileHandle OpenDirectory(string path)
    {
        var fd = open(path, ORdOnly | ODirectory | OCloExec);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw ErrorFor("open directory", path);
    }

    /// <summary>Creates the directory <paramref name="name"/> in <paramref name="parent"/>; an existing entry of that name (even a dangling symlink) is an error.</summary>
    /// <returns>0, or the errno that says why it could not be created.</returns>
    public static int CreateDirectoryAt(SafeFileHandle parent, string name) =>
        mkdirat(parent, NullTerminated(name), 0x1FF /* 0777: the umask decides, as for any mkdir */) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Opens the directory <paramref name="name"/> in <paramref name="parent"/>; a symlink of that name is refused (ELOOP), never followed.</summary>
    public static SafeFileHandle OpenDirectoryAt(SafeFileHandle parent, string name, string pathForErrors) =>
        OpenDirectoryAt(parent, NullTerminated(name), pathForErrors);

    /// <summary>
    /// Opens <paramref name="relativePath"/> for reading without ever leaving <paramref name="directory"/>
    /// and without following any symlink on the way (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
    /// so a trainer cannot swap a validated file, or a directory above it, for a link to the sidecar's
    /// secrets between report and copy. O_NONBLOCK keeps a file swapped for a FIFO from blocking the
    /// open.
    /// </summary>
    /// <exception cref="IOException">HResult is the errno (ELOOP: a symlink on the way); also when it is no longer a regular file.</exception>
    public static SafeFileHandle OpenFileBeneath(SafeFileHandle directory, string relativePath)
    {
        var handle = OpenBeneath(directory, relativePath, ORdOnly | OCloExec | ONonBlock | ONoFollow);
        if (Status(handle, relativePath).Kind != FileKind.Regular)
        {
            handle.Dispose();
            throw new StorageException($"{UserText.Quote(relativePath)} is no longer a regular file");
        }

        return handle;
    }

    /// <summary>
    /// Like <see cref="OpenFileBeneath"/>, but only to learn what the path names (O_PATH): opening a
    /// device or FIFO this way has no side effect and does not block.
    /// </summary>
    public static SafeFileHandle OpenPathBeneath(SafeFileHandle directory, string relativePath) =>
        OpenBeneath(directory, relativePath, OPath | OCloExec);

    /// <summary>
    /// Opens <paramref name="relativePath"/> beneath <paramref name="directory"/> the way storage
    /// content is opened: no symlink anywhere on the way and never out of the directory, never
    /// blocking on a FIFO (O_NONBLOCK); type and size come from the open descriptor, so they describe
    /// what will be read, not what the path named a moment earlier.
    /// </summary>
    /// <exception cref="IOException">HResult is the errno: ELOOP for a symlink on the way, ENOENT when nothing is there.</exception>
    public static SafeFileHandle OpenWithoutSymlinks(SafeFileHandle directory, string relativePath, bool expectDirectory, out FileKind kind, out long size)
    {
        var handle = OpenBeneath(directory, relativePath, ORdOnly | OCloExec | ONonBlock | ONoFollow | (expectDirectory ? ODirectory : 0));
        try
        {
            var status = Status(handle, relativePath);
            (kind, size) = (status.Kind, status.Size);
            return handle;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>What the open file is now: comparing two of these tells whether it changed in between.</summary>
    public static FileStatus Status(SafeFileHandle handle, string pathForErrors)
    {
        Span<byte> statx = stackalloc byte[256];
        if (statx_fd(handle, "", AtEmptyPath, StatxType | StatxIno | StatxSize | StatxMtime | StatxCtime, ref MemoryMarshal.GetReference(statx)) != 0)
        {
            throw ErrorFor("statx", pathForErrors);
        }

        return FileStatus.FromStatx(statx);
    }

    /// <summary>What <paramref name="name"/> in <paramref name="directory"/> is, without following a symlink; null when there is nothing of that name.</summary>
    public static FileStatus? StatusAt(SafeFileHandle directory, string name, string pathForErrors)
    {
        Span<byte> statx = stackalloc byte[256];
        if (statx_fd(directory, name, AtSymlinkNoFollow, StatxType | StatxIno | StatxSize | StatxMtime | StatxCtime, ref MemoryMarshal.GetReference(statx)) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno is ENoEnt or ENotDir ? null : throw ErrorFor("statx", pathForErrors);
        }

        return FileStatus.FromStatx(statx);
    }

    /// <summary>
    /// The names in a directory as the kernel returns them: raw bytes, because a trainer may create
    /// names that are not UTF-8, and a name decoded and re-encoded no longer finds its file.
    /// </summary>
    public static List<byte[]> ListDirectory(SafeFileHandle directory, string pathForErrors)
    {
        // A fresh open file description: readdir's position must not be shared with the caller's descriptor.
        var fd = openat(directory, NullTerminated("."), ORdOnly | ODirectory | OCloExec);
        if (fd < 0)
        {
            throw ErrorFor("open directory", pathForErrors);
        }

        var stream = fdopendir(fd);
        if (stream == IntPtr.Zero)
        {
            var error = ErrorFor("fdopendir", pathForErrors);
            // Closing a directory opened for reading cannot lose data; its result says nothing useful.
            _ = close(fd);
            throw error;
        }

        try
        {
            var names = new List<byte[]>();
            while (true)
            {
                var entry = readdir(stream);
                if (entry == IntPtr.Zero)
                {
                    // readdir returns NULL at the end and on error; only an error sets errno.
                    return Marshal.GetLastPInvokeError() == 0 ? names : throw ErrorFor("readdir", pathForErrors);
                }

                var name = DirentName(entry);
                if (!name.SequenceEqual("."u8) && !name.SequenceEqual(".."u8))
                {
                    names.Add(name.ToArray());
                }
            }
        }
        finally
        {
            _ = closedir(stream);
        }
    }

    /// <summary>
    /// Removes <paramref name="name"/> in <paramref name="parent"/> and, when it is a directory,
    /// everything in it, working on raw names relative to held descriptors: a symlink is removed,
    /// never followed, and a name that is not UTF-8 is removed like any other. Nothing of that name
    /// is not an error.
    /// </summary>
    public static void RemoveTreeAt(SafeFileHandle parent, byte[] name, string pathForErrors) =>
        RemoveTreeAt(parent, NullTerminated(name), pathForErrors, depth: 0);

    /// <summary><see cref="RemoveTreeAt(SafeFileHandle, byte[], string)"/> by path, for entries the sidecar names itself.</summary>
    public static void RemoveTree(string path)
    {
        using var parent = OpenDirectory(Path.GetDirectoryName(path)!);
        RemoveTreeAt(parent, System.Text.Encoding.UTF8.GetBytes(Path.GetFileName(path)), path);
    }

    private static void RemoveTreeAt(SafeFileHandle parent, byte[] name, string pathForErrors, int depth)
    {
        if (unlinkat(parent, name, 0) == 0)
        {
            return;
        }

        // unlink refuses a directory with EISDIR on Linux (EPERM elsewhere); anything else is a real error.
        var errno = Marshal.GetLastPInvokeError();
        if (errno == ENoEnt)
        {
            return;
        }

        if (errno is not (EIsDir or EPerm))
        {
            throw ErrorFor("unlink", pathForErrors);
        }

        if (depth >= MaxRemovalDepth)
        {
            throw new IOException($"'{pathForErrors}' is nested more than {MaxRemovalDepth} directories deep; it is left in place");
        }

        using (var directory = OpenDirectoryAt(parent, name, pathForErrors))
        {
            foreach (var child in ListDirectory(directory, pathForErrors))
            {
                RemoveTreeAt(directory, NullTerminated(child), pathForErrors + "/" + System.Text.Encoding.UTF8.GetString(child), depth + 1);
            }
        }

        if (unlinkat(parent, name, AtRemoveDir) != 0 && Marshal.GetLastPInvokeError() != ENoEnt)
        {
            throw ErrorFor("rmdir", pathForErrors);
        }
    }

    private static SafeFileHandle OpenDirectoryAt(SafeFileHandle parent, byte[] name, string pathForErrors)
    {
        var fd = openat(parent, name, ORdOnly | ODirectory | ONoFollow | OCloExec);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw ErrorFor("open directory", pathForErrors);
    }

    private static SafeFileHandle OpenBeneath(SafeFileHandle directory, string relativePath, int flags)
    {
        var how = new OpenHow { Flags = (ulong)flags, Mode = 0, Resolve = ResolveBeneath | ResolveNoSymlinks | ResolveNoMagicLinks };
        var fd = (int)syscall_openat2(SysOpenat2, directory, relativePath, ref how, (nuint)Marshal.SizeOf<OpenHow>());
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw ErrorFor("openat2", relativePath);
    }

    /// <summary>d_name of a struct dirent (glibc, 64-bit): NUL-terminated, after d_ino, d_off, d_reclen and d_type.</summary>
    private static unsafe ReadOnlySpan<byte> DirentName(IntPtr entry) =>
        MemoryMarshal.CreateReadOnlySpanFromNullTerminated((byte*)entry + 19);

    private static byte[] NullTerminated(string name) => NullTerminated(System.Text.Encoding.UTF8.GetBytes(name));

    private static byte[] NullTerminated(byte[] name)
    {
        var terminated = new byte[name.Length + 1];
        name.CopyTo(terminated, 0);
        return terminated;
    }

    /// <summary>
    /// Reserves the file's blocks up front (less fragmentation, and a full disk shows before any byte is
    /// copied). Not File.OpenHandle's preallocationSize: on a full disk that throws an exception without
    /// the errno, whose message the AOT build strips to a resource key.
    /// </summary>
    public static void Preallocate(SafeFileHandle handle, long size, string pathForErrors)
    {
        if (size <= 0)
        {
            return;
        }

        int result;
        do
        {
            result = fallocate(handle, FallocFlKeepSize, 0, size);
        }
        while (result != 0 && Marshal.GetLastPInvokeError() == EIntr);

        // File systems without fallocate (NFSv3, FUSE) still take the writes; only a real shortage is an error.
        var errno = result == 0 ? 0 : Marshal.GetLastPInvokeError();
        if (errno is ENoSpc or EDQuot or EFBig)
        {
            throw ErrorFor("fallocate", pathForErrors, errno);
        }
    }

    /// <summary>
    /// Turns O_DIRECT on or off for an open file (fcntl F_SETFL): reads and writes then bypass the
    /// page cache, so written bytes are not copied into it and a read returns what storage holds
    /// (on NFS: what the server holds). Not a durability guarantee; fsync is still needed.
    /// </summary>
    /// <returns>False when the file system refuses direct I/O (EINVAL); the file is then unchanged.</returns>
    public static bool TrySetDirect(SafeFileHandle handle, bool direct, string pathForErrors)
    {
        var flags = fcntl(handle, FGetFl, 0);
        if (flags < 0)
        {
            throw ErrorFor("fcntl(F_GETFL)", pathForErrors);
        }

        var wanted = direct ? flags | ODirect : flags & ~ODirect;
        if (wanted == flags)
        {
            return true;
        }

        if (fcntl(handle, FSetFl, wanted) == 0)
        {
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        return errno == EInval ? false : throw ErrorFor("fcntl(F_SETFL)", pathForErrors, errno);
    }

    /// <summary>pread until <paramref name="buffer"/> is full or the file ends.</summary>
    /// <returns>The bytes read, or -1 with <paramref name="errno"/> set (the caller decides whether EINVAL means "no direct I/O here").</returns>
    public static unsafe int ReadFully(SafeFileHandle handle, Span<byte> buffer, long offset, out int errno)
    {
        var total = 0;
        fixed (byte* start = buffer)
        {
            while (total < buffer.Length)
            {
                var read = pread(handle, start + total, (nuint)(buffer.Length - total), offset + total);
                if (read < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    if (errno == EIntr)
                    {
                        continue;
                    }

                    return -1;
                }

                if (read == 0)
                {
                    break;
                }

                total += (int)read;
            }
        }

        errno = 0;
        return total;
    }

    /// <summary>pwrite all of <paramref name="buffer"/>.</summary>
    /// <returns>0, or the errno of the write that failed.</returns>
    public static unsafe int WriteFully(SafeFileHandle handle, ReadOnlySpan<byte> buffer, long offset)
    {
        var total = 0;
        fixed (byte* start = buffer)
        {
            while (total < buffer.Length)
            {
                var written = pwrite(handle, start + total, (nuint)(buffer.Length - total), offset + total);
                if (written < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == EIntr)
                    {
                        continue;
                    }

                    return errno;
                }

                total += (int)written;
            }
        }

        return 0;
    }

    public static void Truncate(SafeFileHandle handle, long size, string pathForErrors)
    {
        if (ftruncate(handle, size) != 0)
        {
            throw ErrorFor("ftruncate", pathForErrors);
        }
    }

    /// <summary>An IOException for a failed call, its errno in HResult (where StorageErrors finds it).</summary>
    public static IOException Error(string call, string path, int errno) => ErrorFor(call, path, errno);

    public static FileKind GetKind(string path)
    {
        Span<byte> statx = stackalloc byte[256];
        if (statx_call(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxSize, ref MemoryMarshal.GetReference(statx)) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == 2 || errno == 20 ? FileKind.Missing : throw ErrorFor("statx", path);
        }

        return FileStatus.KindOf(statx);
    }

    // The errno travels in HResult, where StorageErrors finds it to say what went wrong.
    private static IOException ErrorFor(string call, string path, int? errno = null)
    {
        var error = errno ?? Marshal.GetLastPInvokeError();
        return new IOException($"{call} on '{path}' failed: {Describe(error)} (errno {error})", error);
    }

    /// <summary>Creates a new file with this content and fsyncs it; never opens what is already there.</summary>
    public static void WriteNewFile(string path, ReadOnlySpan<byte> content)
    {
        // CreateNew (O_EXCL): never opens a FIFO or follows a symlink someone left under this name.
        using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        RandomAccess.Write(handle, content, 0);
        Fsync(handle, path);
    }

    /// <summary>
    /// Gives <paramref name="existing"/> the further name <paramref name="newPath"/> unless that name is
    /// taken: an atomic create-if-absent that works on NFS, where a rename would silently replace.
    /// File systems without hard links (some FUSE and object-store mounts) get a rename after checking
    /// the name is free, which is atomic but can lose a race; the loser's content is as valid.
    /// </summary>
    /// <returns>False when <paramref name="newPath"/> already existed (nothing was changed).</returns>
    public static bool TryLinkNoReplace(string existing, string newPath)
    {
        if (link(existing, newPath) == 0)
        {
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno == EExist)
        {
            return false;
        }

        if (errno is not (EPerm or EOpNotSupp or ENoSys))
        {
            throw ErrorFor("link", newPath, errno);
        }

        if (File.Exists(newPath))
        {
            return false;
        }

        File.Move(existing, newPath, overwrite: false);
        return true;
    }

    /// <summary>The C library's sentence for an errno ("Read-only file system"), which the trimmed BCL resources do not strip.</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    [StructLayout(LayoutKind.Sequential)]
    private struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(SafeFileHandle fd);

    // Variadic in C; an int third argument is passed as a normal one on x86-64 and arm64 Linux.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeFileHandle fd, int command, int argument);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint pread(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint pwrite(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ftruncate(SafeFileHandle fd, long length);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string existing, string newPath);

    // glibc has no openat2 wrapper; the system call number is the same on every architecture.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial long syscall_openat2(long number, SafeFileHandle dirfd, string path, ref OpenHow how, nuint size);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx_fd(SafeFileHandle dirfd, string path, int flags, uint mask, ref byte buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    // Names as NUL-terminated bytes rather than strings: a name read from a directory may not be UTF-8.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int openat(SafeFileHandle dirfd, byte[] path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mkdirat(SafeFileHandle dirfd, byte[] path, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unlinkat(SafeFileHandle dirfd, byte[] path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial IntPtr fdopendir(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial IntPtr readdir(IntPtr directory);

    [LibraryImport("libc")]
    private static partial int closedir(IntPtr directory);

    [LibraryImport("libc")]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc")]
    private static partial int posix_fadvise(SafeFileHandle fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx_call(int dirfd, string path, int flags, uint mask, ref byte buffer);
}

/// <summary>The fields of statx that tell whether a file is still the one, with the contents, it was.</summary>
internal readonly record struct FileStatus(FileKind Kind, ulong Device, ulong Inode, long Size, long ModifiedNanoseconds, long ChangedNanoseconds)
{
    /// <summary>Reads struct statx (linux/stat.h); offsets are fixed by the kernel ABI.</summary>
    public static FileStatus FromStatx(ReadOnlySpan<byte> statx)
    {
        var kind = KindOf(statx);
        var device = ((ulong)MemoryMarshal.Read<uint>(statx[136..]) << 32) | MemoryMarshal.Read<uint>(statx[140..]);
        return new FileStatus(kind, device, MemoryMarshal.Read<ulong>(statx[32..]), (long)MemoryMarshal.Read<ulong>(statx[40..]),
            Nanoseconds(statx[112..]), Nanoseconds(statx[96..]));
    }

    /// <summary>struct statx: stx_mode is the u16 at offset 28; the file type is its top four bits.</summary>
    public static FileKind KindOf(ReadOnlySpan<byte> statx) => (MemoryMarshal.Read<ushort>(statx[28..]) & 0xF000) switch
    {
        0x8000 => FileKind.Regular,
        0x4000 => FileKind.Directory,
        0xA000 => FileKind.Symlink,
        _ => FileKind.Special,
    };

    /// <summary>struct statx_timestamp: seconds (s64), then nanoseconds (u32).</summary>
    private static long Nanoseconds(ReadOnlySpan<byte> timestamp) =>
        (MemoryMarshal.Read<long>(timestamp) * 1_000_000_000) + MemoryMarshal.Read<uint>(timestamp[8..]);
}

internal enum FileKind
{
    Missing,
    Regular,
    Directory,
    Symlink,
    Special,
}
