using System.Runtime.InteropServices;

namespace Checkpoint.TestSupport;

/// <summary>Real signals to real processes, as the kubelet sends them.</summary>
public static partial class Posix
{
    public const int SigInt = 2;
    public const int SigKill = 9;
    public const int SigTerm = 15;

    public static void Signal(int pid, int signal)
    {
        if (kill(pid, signal) != 0)
        {
            throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}
