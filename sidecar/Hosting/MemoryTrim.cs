namespace Checkpoint.Sidecar.Hosting;

/// <summary>
/// Hands the GC heap's idle memory back to the OS once start-up is over and after each flush.
/// </summary>
/// <remarks>
/// The GC sizes its gen0 budget from the L3 cache: on a node with a 300 MB L3 it is the 128 MB cap, so
/// the ~11 MB start-up allocates is never collected and every flush adds its garbage on top (idle RSS
/// 31 MB, 89 MB after 100 small flushes, with no gen0 collection at all). Environment knobs such as
/// DOTNET_GCgen0size only lower the budget; pages the heap touched stay committed. An aggressive
/// blocking collection compacts and decommits them (measured: 12.6 MB anonymous memory down to 4.3 MB at
/// idle). It costs a few milliseconds on a heap of a few MB, and runs at most once at a time, on the thread
/// pool, so neither start-up nor the flush writer waits for it.
/// </remarks>
internal static class MemoryTrim
{
    private static int _queued;

    /// <summary>Queues one trim; a request while one is queued or running is folded into it.</summary>
    public static void Request()
    {
        if (Interlocked.Exchange(ref _queued, 1) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static _ => Run(), null);
        }
    }

    private static void Run()
    {
        // Cleared first: garbage made while this collection runs deserves a trim of its own.
        Volatile.Write(ref _queued, 0);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }
}
