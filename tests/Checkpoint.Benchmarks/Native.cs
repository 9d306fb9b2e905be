using System.Runtime.InteropServices;

namespace Checkpoint.Benchmarks;

/// <summary>The few libc calls the flush benchmark needs that .NET does not offer.</summary>
internal static partial class Native
{
    private const int PosixFadvDontNeed = 4;
    private const int RusageChildren = -1;

    /// <summary>
    /// Drops a file's clean pages from the page cache (its data was fsynced when written), so the next reader
    /// reads from disk: "cold" staging, without drop_caches, which would also drop what other processes use.
    /// </summary>
    public static void DropFromPageCache(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var error = posix_fadvise(handle.DangerousGetHandle().ToInt32(), 0, 0, PosixFadvDontNeed);
        if (error != 0)
        {
            throw new IOException($"posix_fadvise(DONTNEED) of {path} failed with errno {error}");
        }
    }

    /// <summary>A hard link: staging the same bytes for the sidecar without copying them (the sidecar unlinks staging after a flush).</summary>
    public static void HardLink(string existing, string link)
    {
        if (link_path(existing, link) != 0)
        {
            throw new IOException($"link {existing} -> {link} failed with errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>
    /// User + system CPU seconds of every child process this process has reaped (the runtime reaps them as
    /// they exit): the delta around one child's life is that child's CPU, its own children included.
    /// </summary>
    public static double ReapedChildrenCpuSeconds()
    {
        Span<long> usage = stackalloc long[18];
        if (getrusage(RusageChildren, ref MemoryMarshal.GetReference(usage)) != 0)
        {
            throw new IOException($"getrusage failed with errno {Marshal.GetLastPInvokeError()}");
        }

        // struct rusage on 64-bit Linux begins with two struct timevals (seconds, microseconds): user, system.
        return usage[0] + usage[1] / 1e6 + usage[2] + usage[3] / 1e6;
    }

    [LibraryImport("libc")]
    private static partial int posix_fadvise(int fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link_path(string existing, string link);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrusage(int who, ref long usage);
}
