using System.Runtime.InteropServices;
using System.Text;

namespace Checkpoint.Benchmarks;

/// <summary>
/// Counts the pods that went on to publish a step, without slowing any sidecar: every pod that finds the
/// world covered reads the other shard manifests and then writes its job manifest to
/// <c>step-N/.&lt;pod&gt;_&lt;attempt&gt;.manifest.tmp</c> before the hard link, so each such pod shows as
/// one IN_CREATE of a distinct name in the step directory (the kernel only merges identical events).
/// The step directory is made before the round so the watch is in place before any pod writes there
/// (the sidecar creates it only when missing).
/// </summary>
internal sealed partial class PublishWatch : IDisposable
{
    private const int InCloexec = 0x80000;
    private const int InNonblock = 0x800;
    private const uint InCreate = 0x100;
    private const uint InQueueOverflow = 0x4000;
    private const int EAgain = 11;
    private const string TempSuffix = ".manifest.tmp";

    private readonly int _fd;

    private PublishWatch(int fd) => _fd = fd;

    public static PublishWatch Start(string stepDirectory)
    {
        Directory.CreateDirectory(stepDirectory);
        var fd = inotify_init1(InCloexec | InNonblock);
        if (fd < 0)
        {
            throw new IOException($"inotify_init1 failed: errno {Marshal.GetLastPInvokeError()}");
        }

        var watch = new PublishWatch(fd);
        if (inotify_add_watch(fd, stepDirectory, InCreate) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            watch.Dispose();
            throw new IOException($"inotify_add_watch '{stepDirectory}' failed: errno {errno}");
        }

        return watch;
    }

    /// <summary>The pods that wrote a job manifest (the winner of the link included) since the watch started.</summary>
    public int Publishers()
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var buffer = new byte[64 << 10];
        while (true)
        {
            var read = (int)read_fd(_fd, buffer, buffer.Length);
            if (read < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                return errno == EAgain ? names.Count : throw new IOException($"reading inotify events failed: errno {errno}");
            }

            // struct inotify_event { int wd; uint32 mask; uint32 cookie; uint32 len; char name[len]; }
            for (var at = 0; at < read;)
            {
                var mask = BitConverter.ToUInt32(buffer, at + 4);
                var length = BitConverter.ToInt32(buffer, at + 12);
                if ((mask & InQueueOverflow) != 0)
                {
                    throw new InvalidOperationException("the inotify queue overflowed: publishers not counted");
                }

                var name = Encoding.UTF8.GetString(buffer, at + 16, length).TrimEnd('\0');
                if (name.EndsWith(TempSuffix, StringComparison.Ordinal))
                {
                    names.Add(name);
                }

                at += 16 + length;
            }
        }
    }

    public void Dispose() => _ = close(_fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int inotify_init1(int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int inotify_add_watch(int fd, string path, uint mask);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint read_fd(int fd, [Out] byte[] buffer, nint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
