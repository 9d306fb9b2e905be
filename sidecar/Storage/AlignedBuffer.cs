using System.Runtime.InteropServices;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Native memory aligned for O_DIRECT (address, and so every chunk offset within it, on a 4096-byte
/// boundary). Not ArrayPool: pooled arrays stay with the process after a flush, and managed arrays
/// are not aligned. Freed on Dispose, so a flush's buffers leave with it.
/// </summary>
internal sealed unsafe class AlignedBuffer : IDisposable
{
    /// <summary>The alignment O_DIRECT asks of buffer addresses, lengths and file offsets (the largest logical block size in use).</summary>
    public const int Alignment = 4096;

    private void* _memory;

    public AlignedBuffer(int length)
    {
        Length = length;
        _memory = NativeMemory.AlignedAlloc((nuint)length, Alignment);
    }

    public int Length { get; }

    public Span<byte> Span => _memory is null ? throw new ObjectDisposedException(nameof(AlignedBuffer)) : new Span<byte>(_memory, Length);

    public static long RoundUp(long value) => (value + Alignment - 1) & ~(long)(Alignment - 1);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_memory);
        _memory = null;
    }
}
