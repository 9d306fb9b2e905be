namespace Checkpoint.Sidecar.Storage;

/// <summary>A trainer's report names a file that cannot be part of a checkpoint.</summary>
public sealed class InvalidReportException : Exception
{
    public InvalidReportException(string path, string reason)
        : this(path, reason, $"file '{path}': {reason}")
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
        new(directory, reason, $"staging directory '{directory}' {reason}");
}

/// <summary>
/// A checkpoint's staging directory could not be created: the staging volume is read-only or full,
/// or something already has the name.
/// </summary>
public sealed class StagingUnavailableException(string directory, string reason)
    : IOException($"could not create the staging directory '{directory}': {reason}")
{
    public string Directory { get; } = directory;
}

/// <summary>The bytes read back from storage do not hash to what was copied.</summary>
public sealed class VerificationFailedException(string path, string expected, string actual)
    : IOException($"verification of '{path}' failed: expected xxh128 {expected}, read back {actual}")
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
/// What went wrong, as a sentence fit for a log line: in this build .NET's own exception messages
/// are bare resource keys (UseSystemResourceKeys), so they are described, not repeated.
/// </summary>
internal static class ReadableError
{
    public static string Describe(Exception e) => e switch
    {
        StorageEntryException or InvalidReportException or VerificationFailedException or InvalidDataException => e.Message,
        System.Text.Json.JsonException json =>
            $"it is not valid JSON of its format (at {json.Path ?? "$"}, line {(json.LineNumber ?? 0) + 1})",
        IOException { HResult: > 0 and < 4096 } io => $"{new System.ComponentModel.Win32Exception(io.HResult).Message} (errno {io.HResult})",
        _ => $"an unexpected {e.GetType().Name}",
    };
}
