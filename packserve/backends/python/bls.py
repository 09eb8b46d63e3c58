"""`pb_utils.InferenceRequest.exec()` / `async_exec()`: a python model calling other models (BLS).

While a python instance runs `execute` (and a coroutine `execute` it returned), this thread's
scope holds the core's `BlsExecutor` (`ModelContext.bls`) and the calling model's name; `exec()`
turns the pb_utils request into a core `InferRequest` (tensors by reference), runs it through the
executor and answers a pb_utils `InferenceResponse`, with the callee's error as a `TritonError`
(`has_error()` / `error()`) as Triton's python backend does. A process-isolated python model
(a child process) forwards the same core request to the parent's executor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packserve.errors import (
    InvalidArgumentError,
    NotFoundError,
    PackserveError,
    UnavailableError,
)
from packserve.messages import InferRequest, InferResponse, RequestedOutput

if TYPE_CHECKING:
    from packserve.backends.base import BlsExecutor
    from packserve.backends.python import pb_utils


@dataclass(frozen=True)
class _Scope:
    executor: BlsExecutor | None
    caller: str


_local = threading.local()


@contextmanager
def bls_scope(executor: BlsExecutor | None, caller: str) -> Iterator[None]:
    """Let `exec()` calls made on this thread while the block runs reach `executor`."""
    previous = getattr(_local, "scope", None)
    _local.scope = _Scope(executor, caller)
    try:
        yield
    finally:
        _local.scope = previous


def _executor() -> tuple[BlsExecutor, str]:
    from packserve.backends.python import pb_utils

    scope: _Scope | None = getattr(_local, "scope", None)
    if scope is None or scope.executor is None:
        raise pb_utils.TritonModelException(
            "BLS requests can only be executed from within execute() of a model served by packserve"
        )
    return scope.executor, scope.caller


def _refuse_decoupled(decoupled: bool) -> None:
    from packserve.backends.python import pb_utils

    if decoupled:
        raise pb_utils.TritonModelException(
            "decoupled BLS (exec(decoupled=True)) is not supported: packserve serves no decoupled models"
        )


def core_request(request: pb_utils.InferenceRequest, caller: str) -> InferRequest:
    """The core request of a BLS call: the caller's arrays themselves, no copies."""
    version = request.model_version()
    names = request.requested_output_names()
    return InferRequest(
        model_name=request.model_name(),
        inputs={tensor.name(): tensor.data() for tensor in request.inputs()},
        model_version="" if version is None or int(version) < 0 else str(version),
        outputs=[RequestedOutput(name) for name in names] if names else None,
        id=request.request_id(),
        timeout_us=max(0, int(request.timeout() or 0)),
        parameters=_parameters(request.parameters()),
    )


def _parameters(raw: str) -> dict[str, Any]:
    import json

    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def pb_response(result: InferResponse | PackserveError) -> pb_utils.InferenceResponse:
    from packserve.backends.python import pb_utils

    if isinstance(result, PackserveError):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(result), triton_code(result)))
    tensors = [pb_utils.Tensor(name, value) for name, value in result.outputs.items()]
    return pb_utils.InferenceResponse(output_tensors=tensors)


def triton_code(error: PackserveError) -> int:
    """The pb_utils.TritonError code of a packserve error (a BLS callee's failure)."""
    from packserve.backends.python import pb_utils

    if isinstance(error, InvalidArgumentError):
        return pb_utils.TritonError.INVALID_ARG
    if isinstance(error, NotFoundError):
        return pb_utils.TritonError.NOT_FOUND
    if isinstance(error, UnavailableError):
        return pb_utils.TritonError.UNAVAILABLE
    return pb_utils.TritonError.INTERNAL


def run(request: pb_utils.InferenceRequest, decoupled: bool) -> pb_utils.InferenceResponse:
    _refuse_decoupled(decoupled)
    executor, caller = _executor()
    try:
        return pb_response(executor.infer(core_request(request, caller)))
    except PackserveError as exc:
        return pb_response(exc)


async def run_async(request: pb_utils.InferenceRequest, decoupled: bool) -> pb_utils.InferenceResponse:
    _refuse_decoupled(decoupled)
    executor, caller = _executor()
    try:
        return pb_response(await executor.infer_async(core_request(request, caller)))
    except PackserveError as exc:
        return pb_response(exc)
