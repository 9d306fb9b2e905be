using System.Runtime.InteropServices;

namespace Checkpoint.Sidecar.Storage;

/// <summary>I/O scheduling classes of ioprio_set(2); <see cref="None"/> leaves a thread's I/O priority alone.</summary>
public enum IoPriorityClass
{
    None = 0,
    BestEffort = 2,
    Idle = 3,
}

/// <summary>
/// The CPU and I/O priority of the calling thread. On Linux both are per thread: setpriority with a
/// thread id and ioprio_set with IOPRIO_WHO_PROCESS and a thread id change that thread alone, so a copy
/// worker can run in the background without touching the rest of the sidecar.
/// </summary>
internal static partial class ThreadScheduling
{
    private const int PrioProcess = 0;
    private const int IoprioWhoProcess = 1;
    private const int IoprioClassShift = 13;

    /// <summary>The best-effort level a nice-0 thread gets when it has no I/O priority of its own.</summary>
    public const int NormalBestEffortLevel = 4;

    /// <summary>The lowest best-effort level.</summary>
    public const int LowestBestEffortLevel = 7;

    public static int CurrentThreadId => gettid();

    /// <summary>setpriority(PRIO_PROCESS, tid, nice); 0 or the errno. Lowering nice needs CAP_SYS_NICE or RLIMIT_NICE, raising it needs nothing.</summary>
    public static int TrySetNice(int threadId, int nice) =>
        setpriority(PrioProcess, (uint)threadId, nice) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>ioprio_set for one thread; 0 or the errno. Idle and best-effort need no privilege, in either direction.</summary>
    public static int TrySetIoPriority(int threadId, IoPriorityClass ioClass, int level)
    {
        if (IoprioSyscalls() is not (var set, _))
        {
            return ENoSys;
        }

        var value = ((int)ioClass << IoprioClassShift) | (ioClass == IoPriorityClass.BestEffort ? level : 0);
        return syscall(set, IoprioWhoProcess, threadId, value) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>ioprio_get for one thread: its class and level, or null where it cannot be read.</summary>
    public static (IoPriorityClass Class, int Level)? GetIoPriority(int threadId)
    {
        if (IoprioSyscalls() is not (_, var get))
        {
            return null;
        }

        var value = syscall(get, IoprioWhoProcess, threadId, 0);
        return value < 0 ? null : ((IoPriorityClass)(value >> IoprioClassShift), (int)(value & ((1 << IoprioClassShift) - 1)));
    }

    private const int ENoSys = 38;

    // glibc has no ioprio wrapper, and the numbers differ between the architectures the image is built for.
    private static (long Set, long Get)? IoprioSyscalls() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => (251, 252),
        Architecture.Arm64 => (30, 31),
        _ => null,
    };

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setpriority(int which, uint who, int prio);

    [LibraryImport("libc")]
    private static partial int gettid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, long a, long b, long c);
}
