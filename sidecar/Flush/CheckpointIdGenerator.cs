using System.Globalization;
using System.Runtime.InteropServices;
using Checkpoint.Sidecar.Storage;

namespace Checkpoint.Sidecar.Flush;

/// <summary>
/// Checkpoint ids sort by creation time (retention and resume fall back on that order), say why the
/// checkpoint was taken, and end in 64 random bits: <c>20261129T024500123Z-preemption-5c0e1f2a9b3d4e67</c>.
/// The trainer shares the staging volume and is not trusted: a name it could predict is a name it
/// could take first (a dangling symlink where the next checkpoint's directory must go). Ids issued
/// in the same millisecond still sort in the order they were issued: each random part is above the
/// one before.
/// </summary>
/// <param name="random">Tests only: a known sequence in place of the kernel's random numbers.</param>
internal sealed partial class CheckpointIdGenerator(TimeProvider time, CheckpointLayout layout, Func<ulong>? random = null)
{
    private const int EInterrupted = 4;

    private readonly Func<ulong> _random = random ?? RandomUInt64;
    private string _lastStamp = "";
    private ulong _lastToken;

    public string Next(CheckpointReason reason)
    {
        var stamp = time.GetUtcNow().UtcDateTime.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture);
        string id;
        do
        {
            // Room above the first token of a millisecond for 2^31 more, each at least 1 and at most 2^32 higher.
            _lastToken = stamp == _lastStamp ? _lastToken + 1 + (_random() >> 32) : _random() >> 1;
            _lastStamp = stamp;
            id = string.Create(CultureInfo.InvariantCulture, $"{stamp}-{reason.ToLabel()}-{_lastToken:x16}");
        }
        // A directory of that name from an earlier pod with a skewed clock: committed checkpoints are never replaced.
        while (Directory.Exists(layout.CommittedDirectory(id)));

        return id;
    }

    /// <summary>
    /// From the kernel (getrandom): not Random.Shared, whose output a trainer that has seen a few
    /// ids could learn to predict, and not RandomNumberGenerator, which loads OpenSSL (~2 MB
    /// resident) for a few bytes. Never throws: ids are made on the SIGTERM path.
    /// </summary>
    private static ulong RandomUInt64()
    {
        Span<byte> bytes = stackalloc byte[sizeof(ulong)];
        while (getrandom(ref MemoryMarshal.GetReference(bytes), (nuint)bytes.Length, 0) != bytes.Length)
        {
            if (Marshal.GetLastPInvokeError() != EInterrupted)
            {
                // getrandom cannot fail on any kernel with openat2; this keeps the id unique regardless.
                return (ulong)Random.Shared.NextInt64();
            }
        }

        return MemoryMarshal.Read<ulong>(bytes);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint getrandom(ref byte buffer, nuint length, uint flags);
}
