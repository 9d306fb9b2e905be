using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.TestSupport;

/// <summary>Real signals to real processes, as the kubelet sends them; and the entries a hostile storage holds.</summary>
public static partial class Posix
{
    public const int SigInt = 2;
    public const int SigKill = 9;
    public const int SigTerm = 15;

    private const int ORdOnly = 0x0;
    private const int OWrOnly = 0x1;
    private const int OCreat = 0x40;
    private const int OExcl = 0x80;
    private const int ONonBlock = 0x800;
    private const int OCloExec = 0x80000;

    public static void Signal(int pid, int signal)
    {
        if (kill(pid, signal) != 0)
        {
            throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>A named pipe: opening it for reading blocks until someone opens it for writing.</summary>
    public static void MakeFifo(string path)
    {
        if (mkfifo(path, 0x1B6) != 0)
        {
            throw new InvalidOperationException($"mkfifo({path}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>
    /// An empty file whose name is <paramref name="rawName"/> byte for byte: .NET's own APIs can only
    /// create names that are valid UTF-8.
    /// </summary>
    public static void CreateFileWithRawName(string directory, ReadOnlySpan<byte> rawName)
    {
        byte[] path = [.. Encoding.UTF8.GetBytes(directory), (byte)'/', .. rawName, 0];
        var fd = open(ref path[0], OWrOnly | OCreat | OExcl | OCloExec, 0x1A4);
        if (fd < 0)
        {
            throw new InvalidOperationException($"open({directory}/<raw name>) failed: errno {Marshal.GetLastPInvokeError()}");
        }

        using var created = new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>
    /// Opens <paramref name="path"/> for reading without ever blocking, whatever it is: a FIFO left
    /// where a file belongs opens at once (and reads as empty) instead of hanging the test.
    /// </summary>
    public static SafeFileHandle OpenForReadingWithoutBlocking(string path)
    {
        byte[] raw = [.. Encoding.UTF8.GetBytes(path), 0];
        var fd = open(ref raw[0], ORdOnly | ONonBlock | OCloExec, 0);
        if (fd < 0)
        {
            throw new InvalidOperationException($"open({path}) failed: errno {Marshal.GetLastPInvokeError()}");
        }

        return new SafeFileHandle(fd, ownsHandle: true);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mkfifo(string path, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int open(ref byte path, int flags, uint mode);
}
