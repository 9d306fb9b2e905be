using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Checkpoint.Benchmarks;

/// <summary>
/// Puts every timed contender in the same memory state before it starts. On these VMs the kernel hands
/// free pages back to the host about 2 s after they are freed (free page reporting), and the next first
/// touch of such a page costs ~2 s of kernel CPU per GiB. Whichever contender happens to start right after
/// another freed a few GiB (a deleted copy's page cache, a dead sidecar) gets cheap pages and looks several
/// times faster. So before each contender this touches and frees the same amount of anonymous memory, and
/// the contender starts right after, well inside the ~2 s before those pages are reported back: every
/// contender starts with that much host-backed free memory, none with more by accident.
/// </summary>
/// <remarks>
/// A native allocation in this process rather than a child process: glibc serves an allocation this large
/// with its own mmap and returns it with munmap on free, so the pages are back on the kernel's free lists
/// the moment <see cref="NativeMemory.Free"/> returns; there is no process exit to wait for. The short
/// pause after it lets the freeing settle (per-CPU page lists drained, the munmap's TLB work done) without
/// coming near the reporting delay.
/// </remarks>
internal sealed class MemoryEqualiser(double gib)
{
    private const int PageSize = 4096;
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(100);

    public double GiB { get; } = gib;

    /// <summary>Seconds each touch took: little when the pages were still host-backed, ~2 s/GiB when not.</summary>
    public List<double> Touches { get; } = [];

    public async Task EqualiseAsync()
    {
        if (GiB <= 0)
        {
            return;
        }

        var bytes = (nuint)(GiB * (1L << 30));
        var clock = Stopwatch.StartNew();
        Touch(bytes);
        Touches.Add(clock.Elapsed.TotalSeconds);
        await Task.Delay(Settle);
    }

    private static unsafe void Touch(nuint bytes)
    {
        var memory = (byte*)NativeMemory.Alloc(bytes);
        try
        {
            // One write per page is what makes the kernel back it; the value does not matter. The first touch
            // is kernel CPU (~2 s/GiB when the host took the pages back): spread over every core, it costs
            // the run less wall time, and nothing else is timed while it runs.
            var parts = Environment.ProcessorCount;
            var pagesPerPart = (bytes / PageSize + (nuint)parts - 1) / (nuint)parts;
            var start = (nint)memory;
            Parallel.For(0, parts, part =>
            {
                var first = (nuint)part * pagesPerPart * PageSize;
                var end = Math.Min(bytes, first + pagesPerPart * PageSize);
                for (var offset = first; offset < end; offset += PageSize)
                {
                    ((byte*)start)[offset] = 1;
                }
            });
        }
        finally
        {
            NativeMemory.Free(memory);
        }
    }
}
