using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>XXH128 of files as the checkpoint format records it.</summary>
public static class FileHasher
{
    /// <summary>Workers reading one file's ranges at once (resume validation, the operator's verify).</summary>
    internal const int ReadWorkers = 4;

    public static string ToHex(XxHash128 hash) => Convert.ToHexStringLower(hash.GetCurrentHash());

    /// <summary>
    /// Hashes what storage holds: read with O_DIRECT (or, where the file system refuses it, with the
    /// file's cached pages dropped first), so on NFS the bytes come from the server rather than the
    /// client's copy of what was just written. Ranges are read by several workers at once and hashed
    /// in file order.
    /// </summary>
    public static string HashFromStorage(string path, int bufferSize, Action<long>? onBytes = null, CancellationToken cancellationToken = default)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        return HashFromStorage(handle, path, bufferSize, onBytes, cancellationToken);
    }

    /// <summary>As <see cref="HashFromStorage(string, int, Action{long}?, CancellationToken)"/>, through a handle the caller opened and checked (it is switched to O_DIRECT where possible).</summary>
    public static string HashFromStorage(SafeFileHandle handle, string path, int bufferSize, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        var job = new StorageHashJob(NativeFile.Status(handle, path).Size, () => handle, ownsHandle: false, path, name: null, expected: null, onBytes);
        new RangeWorkers([job], ReadWorkers, bufferSize, CopyPace.FullSpeed(), cancellationToken).Run();
        return job.Result!;
    }

    internal static void DropCacheQuietly(SafeFileHandle handle, string path)
    {
        try
        {
            NativeFile.DropCache(handle, path);
        }
        catch (IOException)
        {
            // Advice only: a filesystem that refuses it still holds correct data.
        }
    }
}

/// <summary>Hashes one file on storage through a <see cref="StorageReader"/>, optionally comparing it with its manifest entry.</summary>
/// <param name="name">The manifest path, for messages; null: errors are left as they are, for a caller that words its own.</param>
/// <param name="expected">The manifest hash; a different one fails the run with <see cref="VerificationFailedException"/>.</param>
internal sealed class StorageHashJob(long size, Func<SafeFileHandle> open, bool ownsHandle, string path, string? name, string? expected, Action<long>? onBytes)
    : RangeJob(size)
{
    private StorageReader? _reader;
    private long _shortAt = -1;

    public string? Result { get; private set; }

    public override void Open() => Guard(() =>
    {
        var handle = open();
        _reader = new StorageReader(handle, path);
        _reader.Start();
    });

    public override void Transfer(long offset, Span<byte> buffer, int length)
    {
        var read = 0;
        Guard(buffer, length, (b, l) => read = _reader!.Read(offset, b, l));
        if (read < length)
        {
            // Hashing the rest of the buffer would hash stale bytes; the file is simply not what it was.
            Interlocked.CompareExchange(ref _shortAt, offset + read, -1);
            buffer[read..length].Clear();
        }

        onBytes?.Invoke(length);
    }

    public override bool Finish() => Complete(Hash);

    /// <summary>Finishes the read, <paramref name="hash"/> holding every chunk (a copy job hashes its read-back itself).</summary>
    public bool Complete(XxHash128 hash)
    {
        Span<byte> probe = stackalloc byte[1];
        var beyond = NativeFile.ReadFully(_reader!.Handle, probe, Size, out var errno);
        _reader.Finish();
        Result = FileHasher.ToHex(hash);
        var sizeDiffers = _shortAt >= 0 || beyond > 0;
        if (expected is not null && (sizeDiffers || !string.Equals(Result, expected, StringComparison.Ordinal)))
        {
            throw new VerificationFailedException(name ?? path, expected, sizeDiffers ? $"a file of another size than {Size} bytes" : Result);
        }

        if (sizeDiffers)
        {
            throw new StorageException($"'{path}' changed size while it was read: expected {Size} bytes");
        }

        return beyond >= 0 ? false : throw NativeFile.Error("pread", path, errno);
    }

    public override void Close()
    {
        if (ownsHandle)
        {
            _reader?.Handle.Dispose();
        }
    }

    private delegate void ChunkAction(Span<byte> buffer, int length);

    private void Guard(Span<byte> buffer, int length, ChunkAction action)
    {
        try
        {
            action(buffer, length);
        }
        catch (Exception e) when (name is not null && e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed($"reading {UserText.Quote(name)} back from the checkpoint storage", e);
        }
    }

    private void Guard(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (name is not null && e is IOException or UnauthorizedAccessException)
        {
            throw StorageErrors.Failed($"reading {UserText.Quote(name)} back from the checkpoint storage", e);
        }
    }
}
