using System.ComponentModel;

namespace Checkpoint.Sidecar.Storage;

/// <summary>A trainer's report names a file that cannot be part of a checkpoint.</summary>
public sealed class InvalidReportException : Exception
{
    public InvalidReportException(string path, string reason)
        : this(path, reason, $"file {UserText.Quote(path)}: {reason}")
    {
    }

    private InvalidReportException(string path, string reason, string message)
        : base(message)
    {
        Path = path;
        Reason = reason;
    }

    public string Path { get; }

    public string Reason { get; }

    /// <summary>The checkpoint's staging directory itself cannot be trusted any more, whatever the report lists.</summary>
    public static InvalidReportException ForStagingDirectory(string directory, string reason) =>
        new(directory, reason, $"staging directory {UserText.Quote(directory)} {reason}");
}

/// <summary>
/// A checkpoint's staging directory could not be created: the staging volume is read-only or full,
/// or something already has the name.
/// </summary>
public sealed class StagingUnavailableException(string directory, string reason, int errno = 0)
    : IOException($"could not create the staging directory {UserText.Quote(directory)}: {reason}")
{
    public int Errno { get; } = errno;

    public string Directory { get; } = directory;
}

/// <summary>The bytes read back from storage do not hash to what was copied.</summary>
public sealed class VerificationFailedException(string path, string expected, string actual)
    : IOException($"verification of {UserText.Quote(path)} failed: expected xxh128 {expected}, read back {actual}")
{
    public string Path { get; } = path;
}

/// <summary>
/// An entry on the shared storage that cannot be what it is taken for: missing, a symlink or reached
/// through one, not a regular file (a FIFO, a directory), or larger than such a file may be.
/// </summary>
public sealed class StorageEntryException(string message, bool isMissing = false) : IOException(message)
{
    public bool IsMissing { get; } = isMissing;
}

/// <summary>
/// A storage or staging operation failed; the message is a sentence naming what was being done to which
/// file and why, and <see cref="Exception.HResult"/> keeps the errno.
/// </summary>
public sealed class StorageException(string message, int errno = 0, Exception? cause = null) : IOException(message, cause)
{
    public int Errno { get; } = errno;
}

/// <summary>
/// The one place that turns failed file operations into sentences a person can act on. .NET's own
/// messages cannot be shown: the Native AOT build strips its resource strings (UseSystemResourceKeys),
/// so a full disk would read "IO_DiskFull_Path_AllocationSize, &lt;path&gt;, ...". The errno underneath
/// tells the story, and every message is built from it.
/// </summary>
public static class StorageErrors
{
    private const int NoErrno = 0;

    /// <summary>
    /// Wraps a failure with what was being done, e.g. <c>Failed($"writing {UserText.Quote(file)} to the
    /// checkpoint storage", e)</c> reads "Writing 'rank-0/model.bin' to the checkpoint storage failed: no
    /// space is left on the device (ENOSPC)".
    /// </summary>
    public static StorageException Failed(string doing, Exception cause) =>
        cause as StorageException
        ?? new StorageException($"{char.ToUpperInvariant(doing[0])}{doing[1..]} failed: {Reason(cause)}", Errno(cause), cause);

    /// <summary>The whole story of a failure, for a flush outcome, a log line or a gRPC status.</summary>
    public static string Describe(Exception exception) => exception switch
    {
        StorageException or StorageEntryException or VerificationFailedException or InvalidReportException or InvalidDataException
            => exception.Message,
        System.Text.Json.JsonException json =>
            $"it is not valid JSON of its format (at {json.Path ?? "$"}, line {(json.LineNumber ?? 0) + 1})",
        _ => $"the storage operation failed: {Reason(exception)}",
    };

    /// <summary>Why an operation failed, as the end of a sentence: "no space is left on the device (ENOSPC)".</summary>
    public static string Reason(Exception exception) => Errno(exception) switch
    {
        NoErrno => exception switch
        {
            OperationCanceledException => "it was cancelled",
            IOException => "the system reported an I/O error without an error number",
            _ => $"an unexpected {exception.GetType().Name} was raised",
        },
        var errno => Reason(errno),
    };

    /// <summary>An errno as the end of a sentence: "the file system is mounted read-only (EROFS)".</summary>
    public static string Reason(int errno)
    {
        return errno switch
        {
            1 => "the operation is not permitted (EPERM)",
            2 => "the file or a directory on its path does not exist (ENOENT)",
            4 => "the operation was interrupted (EINTR)",
            5 => "the device reported an I/O error (EIO)",
            12 => "the system is out of memory (ENOMEM)",
            13 => "permission was denied (EACCES)",
            17 => "it already exists (EEXIST)",
            18 => "it lies on another file system (EXDEV)",
            20 => "a part of the path is not a directory (ENOTDIR)",
            21 => "it is a directory (EISDIR)",
            23 or 24 => $"too many files are open ({(errno == 23 ? "ENFILE" : "EMFILE")})",
            27 => "the file is larger than the file system allows (EFBIG)",
            28 => "no space is left on the device (ENOSPC)",
            30 => "the file system is mounted read-only (EROFS)",
            36 => "the path is too long (ENAMETOOLONG)",
            39 => "the directory is not empty (ENOTEMPTY)",
            40 => "it is a symbolic link, or too many symbolic links lead to it (ELOOP)",
            107 => "the mount is no longer connected (ENOTCONN)",
            110 => "the storage did not answer in time (ETIMEDOUT)",
            116 => "the NFS file handle is stale: the file was changed or removed on the server (ESTALE)",
            122 => "the disk quota is used up (EDQUOT)",
            // strerror comes from libc, not from the stripped .NET resources.
            _ => $"{new Win32Exception(errno).Message} (errno {errno})",
        };
    }

    /// <summary>Storage that is full (ENOSPC) or over its quota (EDQUOT): freeing space fixes it, retrying does not.</summary>
    public static bool IsOutOfSpace(Exception exception) => Errno(exception) is 28 or 122;

    /// <summary>The errno behind a .NET I/O exception, or 0 when it did not keep one.</summary>
    internal static int Errno(Exception exception) => exception switch
    {
        StorageException storage => storage.Errno,
        StagingUnavailableException staging => staging.Errno,
        // .NET puts the raw errno into HResult for the I/O errors it has no special type for; its own codes are negative.
        IOException { HResult: > 0 and < 4096 } io => io.HResult,
        FileNotFoundException or DirectoryNotFoundException => 2,
        PathTooLongException => 36,
        // .NET keeps the errno of EACCES, EPERM and EBADF in the inner exception.
        UnauthorizedAccessException denied => denied.InnerException is { } inner && Errno(inner) is > 0 and var errno ? errno : 13,
        _ => NoErrno,
    };
}

/// <summary>
/// Text a trainer or storage supplied, echoed in an error or a log: capped, because a 5000-byte path
/// in a gRPC status overflows the trailers a client accepts, and stripped of control characters, so
/// a name cannot forge a log line.
/// </summary>
public static class UserText
{
    public const int MaxEchoedChars = 256;

    /// <summary>The text in single quotes, as every message names a file or id.</summary>
    public static string Quote(string? text) => $"'{Cap(text)}'";

    public static string Cap(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }

        var shown = text.Length <= MaxEchoedChars ? text : text[..CutAt(text)] + "…";
        return shown.Any(char.IsControl) ? string.Concat(shown.Select(c => char.IsControl(c) ? '?' : c)) : shown;
    }

    // Never splits a surrogate pair: half a character would make the message invalid UTF-8 on the wire.
    private static int CutAt(string text) =>
        char.IsHighSurrogate(text[MaxEchoedChars - 1]) ? MaxEchoedChars - 1 : MaxEchoedChars;
}
