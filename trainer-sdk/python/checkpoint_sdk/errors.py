"""The one exception type of the SDK."""

from __future__ import annotations

import enum
import os
from typing import Optional

import grpc


class ErrorCode(enum.IntEnum):
    """Kinds of failures; the values equal the gRPC status codes (as in the sidecar's logs and the .NET SDK)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class CheckpointError(Exception):
    """Anything that went wrong talking to the sidecar: it is absent, refused a report, or did not answer in time.

    ``code`` (:class:`ErrorCode`) tells failures apart in code: ``UNAVAILABLE`` the sidecar cannot be reached,
    ``INVALID_ARGUMENT`` it rejected a reported file (the message names it), ``NOT_FOUND`` / ``FAILED_PRECONDITION``
    an unknown or ended checkpoint, or a periodic checkpoint asked for while the pod terminates,
    ``DEADLINE_EXCEEDED`` no answer within the call's timeout.
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.UNKNOWN, detail: Optional[str] = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        #: The sidecar's own words (the gRPC status detail), when it answered.
        self.detail = detail

    def __str__(self) -> str:  # keeps the code visible in tracebacks and logs
        return f"[{self.code.name}] {self.args[0]}"


def unreachable(socket_path: str, operation: str, detail: str) -> CheckpointError:
    directory = os.path.dirname(socket_path) or socket_path
    if os.path.exists(socket_path):
        message = (
            f"{operation} failed: the checkpoint sidecar socket {socket_path} exists but nothing answers on it "
            f"({detail}). Check that the sidecar container is running and healthy "
            f"(kubectl logs <pod> -c <sidecar container>)."
        )
    else:
        message = (
            f"{operation} failed: there is no checkpoint sidecar socket at {socket_path} ({detail}). "
            f"Check that the sidecar container is running, that the volume holding the socket is mounted at "
            f"{directory} in this container too, and that CHECKPOINT_SOCKET_PATH names the same path in both containers."
        )
    return CheckpointError(message, ErrorCode.UNAVAILABLE, detail)


def translate(socket_path: str, operation: str, error: BaseException, timeout: Optional[float] = None) -> CheckpointError:
    """Turns a grpc.RpcError into a CheckpointError a person can act on."""
    if isinstance(error, CheckpointError):
        return error
    if not isinstance(error, grpc.RpcError) or not hasattr(error, "code"):
        return unreachable(socket_path, operation, str(error) or type(error).__name__)
    status = error.code()
    detail = (error.details() or status.name) if hasattr(error, "details") else status.name
    code = ErrorCode(status.value[0])
    if code == ErrorCode.UNAVAILABLE:
        return unreachable(socket_path, operation, detail)
    if code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.NOT_FOUND, ErrorCode.FAILED_PRECONDITION):
        return CheckpointError(f"The checkpoint sidecar rejected {operation}: {detail}", code, detail)
    if code == ErrorCode.DEADLINE_EXCEEDED:
        within = f" within {timeout:g} s" if timeout is not None else ""
        return CheckpointError(
            f"{operation}: the checkpoint sidecar at {socket_path} did not answer{within} ({detail})", code, detail)
    if code == ErrorCode.UNIMPLEMENTED:
        return CheckpointError(
            f"The checkpoint sidecar does not implement {operation}; the trainer SDK and sidecar versions do not match "
            f"({detail}).", code, detail)
    return CheckpointError(f"{operation} failed ({code.name}): {detail}", code, detail)
