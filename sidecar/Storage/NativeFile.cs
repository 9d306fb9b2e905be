using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// The few POSIX calls .NET does not expose with the guarantees a checkpoint needs: an fsync whose
/// error is reported (FileStream swallows close() errors), fsync of a directory (so a rename is
/// durable), dropping a file's pages from the client cache (so read-back verification reads what the
/// server holds, not what we just wrote), and the type of a path without following symlinks.
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
    private const ulong ResolveBeneath = 0x08;
    private const long SysOpenat2 = 437;
    private const int FallocFlKeepSize = 0x1;
    private const int EIntr = 4;
    private const int EFBig = 27;
    private const int ENoSpc = 28;
    private const int EDQuot = 122;

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
                throw new StorageException($"{UserText.Quote(relativePath)} leads out of the staging directory", errno);
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
            throw new StorageException($"{UserText.Quote(relativePath)} is no longer a regular file");
        }

        return handle;
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

    public static FileKind GetKind(string path)
    {
        Span<byte> statx = stackalloc byte[256];
        if (statx_call(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxSize, ref MemoryMarshal.GetReference(statx)) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == 2 || errno == 20 ? FileKind.Missing : throw ErrorFor("statx", path);
        }

        // struct statx: stx_mode is the u16 at offset 28; the file type is its top four bits.
        var mode = MemoryMarshal.Read<ushort>(statx[28..]);
        return (mode & 0xF000) switch
        {
            0x8000 => FileKind.Regular,
            0x4000 => FileKind.Directory,
            0xA000 => FileKind.Symlink,
            _ => FileKind.Special,
        };
    }

    // The errno travels in HResult, where StorageErrors finds it to say what went wrong.
    private static IOException ErrorFor(string call, string path, int? errno = null)
    {
        var error = errno ?? Marshal.GetLastPInvokeError();
        return new IOException($"{call} on '{path}' failed: {new Win32Exception(error).Message} (errno {error})", error);
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

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

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
