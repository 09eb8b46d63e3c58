"""The one table from error types to HTTP status and gRPC status codes, used by both front ends."""

from __future__ import annotations

import grpc

from packserve import errors

# Most specific first: the first matching class wins.
_TABLE: tuple[tuple[type[Exception], int, grpc.StatusCode], ...] = (
    (errors.ExecutionTimeoutError, 504, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.ResourceExhaustedError, 413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.QueueFullError, 503, grpc.StatusCode.UNAVAILABLE),
    (errors.RequestTimeoutError, 503, grpc.StatusCode.UNAVAILABLE),
    (errors.ServerShuttingDownError, 503, grpc.StatusCode.UNAVAILABLE),
    # Triton 2.51 answers 404 "has no available versions" for a known model that is not loaded.
    (errors.ModelNotReadyError, 404, grpc.StatusCode.UNAVAILABLE),
    (errors.UnavailableError, 503, grpc.StatusCode.UNAVAILABLE),
    # Triton 2.51 answers 404 for an unknown model or version (metadata, config, infer).
    (errors.NotFoundError, 404, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, 400, grpc.StatusCode.ALREADY_EXISTS),
    (errors.UnsupportedError, 400, grpc.StatusCode.UNIMPLEMENTED),
    (errors.InvalidArgumentError, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ModelLoadError, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ModelExecutionError, 500, grpc.StatusCode.INTERNAL),
    (errors.TraceSettingRefusedError, 501, grpc.StatusCode.UNIMPLEMENTED),
)


def http_status(error: BaseException) -> int:
    """HTTP status for an error; 500 for anything that is not a PackserveError."""
    for cls, status, _ in _TABLE:
        if isinstance(error, cls):
            return status
    return 500


def grpc_status(error: BaseException) -> grpc.StatusCode:
    for cls, _, code in _TABLE:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL
