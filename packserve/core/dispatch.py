"""What composite models (ensembles, region maps) need from the engine: a way to run a sub-request.

Kept as a protocol so the composite schedulers never import the engine itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Protocol

from packserve.config.spec import ModelSpec
from packserve.core.request import InferRequest, InferResponse
from packserve.errors import ExecutionTimeoutError


class Dispatcher(Protocol):
    async def infer(self, request: InferRequest) -> InferResponse:
        """Run a request through its model's own scheduler, with statistics, as a client's would."""
        ...

    def model_spec(self, name: str) -> ModelSpec:
        """The spec of the ready model `name` (latest version); raises if it is not ready."""
        ...


def blocking_infer(
    dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop
) -> Callable[[InferRequest, float], InferResponse]:
    """A function that runs a request through the engine from a thread other than the loop's and
    waits for at most `timeout_s` (BLS calls from isolated python models)."""

    def run(request: InferRequest, timeout_s: float) -> InferResponse:
        future = asyncio.run_coroutine_threadsafe(dispatcher.infer(request), loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ExecutionTimeoutError(
                f"BLS request to model '{request.model_name}' did not finish within the caller's "
                f"execution deadline ({timeout_s:.1f} s left)"
            ) from None

    return run
