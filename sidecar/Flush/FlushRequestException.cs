namespace Checkpoint.Sidecar.Flush;

/// <summary>A trainer's request cannot be carried out; the kind maps onto a gRPC status code.</summary>
public sealed class FlushRequestException(FlushRequestError error, string message) : Exception(message)
{
    public FlushRequestError Error { get; } = error;
}

public enum FlushRequestError
{
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    AlreadyExists,
    ResourceExhausted,
    PermissionDenied,
}
