namespace Checkpoint.TrainerSdk;

/// <summary>
/// The one exception the SDK throws for anything that went wrong talking to the sidecar: it is not running, its socket
/// is missing, it rejected a report (a missing or unreadable file, an unknown checkpoint id), or the connection broke.
/// The message says what was wrong and what to check; <see cref="StatusCode"/> tells failures apart in code.
/// </summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates an exception with a generic message and <see cref="CheckpointErrorCode.Unknown"/>.</summary>
    public CheckpointException()
        : this("The checkpoint sidecar call failed.")
    {
    }

    /// <summary>Creates an exception with <see cref="CheckpointErrorCode.Unknown"/>.</summary>
    /// <param name="message">What went wrong, for people.</param>
    public CheckpointException(string message)
        : this(message, CheckpointErrorCode.Unknown, innerException: null)
    {
    }

    /// <summary>Creates an exception with <see cref="CheckpointErrorCode.Unknown"/> wrapping the failure that caused it.</summary>
    /// <param name="message">What went wrong, for people.</param>
    /// <param name="innerException">The failure underneath, kept for diagnostics.</param>
    public CheckpointException(string message, Exception? innerException)
        : this(message, CheckpointErrorCode.Unknown, innerException)
    {
    }

    /// <summary>Creates an exception with a specific code.</summary>
    /// <param name="message">What went wrong, for people.</param>
    /// <param name="statusCode">The kind of failure.</param>
    /// <param name="innerException">The failure underneath, kept for diagnostics.</param>
    public CheckpointException(string message, CheckpointErrorCode statusCode, Exception? innerException = null)
        : base(message, innerException)
    {
        StatusCode = statusCode;
    }

    /// <summary>
    /// The kind of failure, mirroring the gRPC status the sidecar answered with: <see cref="CheckpointErrorCode.Unavailable"/>
    /// when the sidecar cannot be reached, <see cref="CheckpointErrorCode.InvalidArgument"/> when it rejected the files of a
    /// report, <see cref="CheckpointErrorCode.NotFound"/> or <see cref="CheckpointErrorCode.FailedPrecondition"/> for an
    /// unknown or finished checkpoint, <see cref="CheckpointErrorCode.DeadlineExceeded"/> when it did not answer in time.
    /// </summary>
    public CheckpointErrorCode StatusCode { get; }
}

/// <summary>
/// Kinds of sidecar failures. The values equal the gRPC status codes, so a code seen in the sidecar's logs reads the same here.
/// </summary>
public enum CheckpointErrorCode
{
    /// <summary>Not an error; never carried by a <see cref="CheckpointException"/> the SDK throws.</summary>
    Ok = 0,

    /// <summary>The call was cancelled.</summary>
    Cancelled = 1,

    /// <summary>The failure could not be classified.</summary>
    Unknown = 2,

    /// <summary>The sidecar rejected the request, for example a reported file that does not exist.</summary>
    InvalidArgument = 3,

    /// <summary>The call did not finish in time.</summary>
    DeadlineExceeded = 4,

    /// <summary>The sidecar does not know the checkpoint or trainer named.</summary>
    NotFound = 5,

    /// <summary>The thing to create exists already.</summary>
    AlreadyExists = 6,

    /// <summary>The sidecar refused the caller.</summary>
    PermissionDenied = 7,

    /// <summary>The sidecar ran out of something, such as disk space for staging.</summary>
    ResourceExhausted = 8,

    /// <summary>The request does not fit the checkpoint's state, for example reporting to a checkpoint that has ended.</summary>
    FailedPrecondition = 9,

    /// <summary>The operation was aborted, typically by a concurrent one.</summary>
    Aborted = 10,

    /// <summary>A value was out of range.</summary>
    OutOfRange = 11,

    /// <summary>The sidecar does not implement the call; the SDK and sidecar versions differ.</summary>
    Unimplemented = 12,

    /// <summary>The sidecar failed internally; its logs say why.</summary>
    Internal = 13,

    /// <summary>The sidecar cannot be reached: it is not running, or its socket is not where the SDK looks.</summary>
    Unavailable = 14,

    /// <summary>Data was lost or corrupted.</summary>
    DataLoss = 15,

    /// <summary>The caller is not authenticated.</summary>
    Unauthenticated = 16,
}
