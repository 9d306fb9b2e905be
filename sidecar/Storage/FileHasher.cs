using System.Buffers;
using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>XXH128 of files as the checkpoint format records it.</summary>
public static class FileHasher
{
    public static string ToHex(XxHash128 hash) => Convert.ToHexStringLower(hash.GetCurrentHash());

    /// <summary>
    /// Hashes what storage holds: the file's cached pages are dropped before reading, so on NFS the
    /// bytes come from the server rather than the client's copy of what was just written.
    /// </summary>
    public static string HashFromStorage(string path, int bufferSize, Action<long>? onBytes = null, CancellationToken cancellationToken = default)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        return HashFromStorage(handle, path, bufferSize, onBytes, cancellationToken);
    }

    /// <summary>As <see cref="HashFromStorage(string, int, Action{long}?, CancellationToken)"/>, through a handle the caller opened and checked.</summary>
    public static string HashFromStorage(SafeFileHandle handle, string path, int bufferSize, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        DropCacheQuietly(handle, path);
        var hash = new XxHash128();
        var buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
        try
        {
            long offset = 0;
            int read;
            while ((read = RandomAccess.Read(handle, buffer.AsSpan(0, bufferSize), offset)) > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                hash.Append(buffer.AsSpan(0, read));
                offset += read;
                onBytes?.Invoke(read);
            }

            // The read-back pages are of no further use to us; don't let them count against the pod's memory.
            DropCacheQuietly(handle, path);
            return ToHex(hash);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
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
