"""The error tree. Layers raise these types; only the front ends map them to status codes.

Each message names the problem (model, input, expected vs got) because it goes to the client as is.
"""

from __future__ import annotations


class PackserveError(Exception):
    """Base of every error packserve reports to a client."""

    # A short machine-readable reason, used as the `reason` label of the failure metric.
    reason = "OTHER"


class InvalidArgumentError(PackserveError):
    """The request is malformed: bad shape, datatype, missing input, bad encoding (HTTP 400)."""

    reason = "REJECTED"


class NotFoundError(PackserveError):
    """Unknown model, version or tensor (HTTP 404 where Triton uses it, else 400)."""

    reason = "REJECTED"


class UnavailableError(PackserveError):
    """The model or server cannot take the request now (HTTP 503, gRPC UNAVAILABLE)."""

    reason = "REJECTED"


class ModelNotReadyError(UnavailableError):
    """The model exists but is not loaded (loading, unloading or failed)."""


class QueueFullError(UnavailableError):
    """The dynamic batcher's queue is at the config's max_queue_size; retry later (HTTP 503)."""

    reason = "REJECTED"


class InFlightLimitError(UnavailableError):
    """Admission control: the model already holds the server's bound of requests, waiting and
    executing (core/admission.py); retry later (HTTP 503)."""

    reason = "REJECTED"


class RequestTimeoutError(UnavailableError):
    """The request waited in the queue longer than its timeout (timeout_action REJECT)."""

    reason = "REJECTED"


class ServerShuttingDownError(UnavailableError):
    """The server is draining after SIGTERM and takes no new requests."""


class ServerOverloadedError(UnavailableError):
    """The server's memory is above --max-memory: new work is shed until it falls (HTTP 503)."""


class ExecutionTimeoutError(PackserveError):
    """The model's execution ran past its execution deadline (HTTP 504, gRPC DEADLINE_EXCEEDED)."""

    reason = "BACKEND"


class ResourceExhaustedError(PackserveError):
    """The request is larger than a configured limit: body, elements, pixels (HTTP 413)."""

    reason = "REJECTED"


class ModelExecutionError(PackserveError):
    """The model itself failed while executing this request (HTTP 500, gRPC INTERNAL)."""

    reason = "BACKEND"


class ModelLoadError(PackserveError):
    """A model could not be loaded; the message is the reason shown in the repository index."""

    reason = "OTHER"


class ConfigError(ModelLoadError):
    """A model configuration is unparsable or invalid."""


class TraceSettingRefusedError(PackserveError):
    """A trace setting that cannot change at run time, e.g. the trace file (HTTP 501 as in Triton,
    gRPC UNIMPLEMENTED)."""

    reason = "REJECTED"


class AlreadyExistsError(InvalidArgumentError):
    """Registering a name that is already registered (HTTP 400, gRPC ALREADY_EXISTS)."""


class UnsupportedError(InvalidArgumentError):
    """A protocol feature packserve does not implement, e.g. CUDA shared memory (HTTP 400,
    gRPC UNIMPLEMENTED)."""
