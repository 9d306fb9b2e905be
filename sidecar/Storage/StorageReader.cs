using Microsoft.Win32.SafeHandles;

namespace Checkpoint.Sidecar.Storage;

/// <summary>
/// Reads a file on storage so that the bytes come from storage, not from this machine's cache of
/// what was just written: O_DIRECT where the file system takes it; elsewhere the file's cached
/// pages are dropped first (POSIX_FADV_DONTNEED, which works because they are clean after fsync).
/// Safe for several workers reading different ranges at once.
/// </summary>
internal sealed class StorageReader(SafeFileHandle handle, string path)
{
    private const int EInval = 22;
    private readonly object _gate = new();
    private volatile bool _direct;

    public SafeFileHandle Handle => handle;

    public void Start()
    {
        _direct = NativeFile.TrySetDirect(handle, direct: true, path);
        if (!_direct)
        {
            FileHasher.DropCacheQuietly(handle, path);
        }
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/> (a multiple of the alignment) into <paramref name="buffer"/> (aligned, at least the length rounded up).</summary>
    /// <returns>The bytes read: fewer than asked only at the end of the file; more only when the file is longer than expected (direct reads are whole blocks).</returns>
    public int Read(long offset, Span<byte> buffer, int length)
    {
        if (_direct)
        {
            var read = NativeFile.ReadFully(handle, buffer[..(int)AlignedBuffer.RoundUp(length)], offset, out var errno);
            if (read >= 0)
            {
                return read;
            }

            // Some file systems (FUSE among them) accept O_DIRECT at open and refuse the first read.
            if (errno != EInval)
            {
                throw NativeFile.Error("pread", path, errno);
            }

            FallBack();
        }

        var buffered = NativeFile.ReadFully(handle, buffer[..length], offset, out var error);
        return buffered >= 0 ? buffered : throw NativeFile.Error("pread", path, error);
    }

    /// <summary>Drops what a buffered read left in the cache; the pages are of no further use and would count against the pod's memory.</summary>
    public void Finish()
    {
        if (!_direct)
        {
            FileHasher.DropCacheQuietly(handle, path);
        }
    }

    private void FallBack()
    {
        lock (_gate)
        {
            if (_direct)
            {
                NativeFile.TrySetDirect(handle, direct: false, path);
                FileHasher.DropCacheQuietly(handle, path);
                _direct = false;
            }
        }
    }
}
