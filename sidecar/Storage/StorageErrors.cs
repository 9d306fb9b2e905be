namespace Checkpoint.Sidecar.Storage;

/// <summary>A trainer's report names a file that cannot be part of a checkpoint.</summary>
public sealed class InvalidReportException(string path, string reason)
    : Exception($"file '{path}': {reason}")
{
    public string Path { get; } = path;

    public string Reason { get; } = reason;
}

/// <summary>The bytes read back from storage do not hash to what was copied.</summary>
public sealed class VerificationFailedException(string path, string expected, string actual)
    : IOException($"verification of '{path}' failed: expected xxh128 {expected}, read back {actual}")
{
    public string Path { get; } = path;
}
