"""The core's side of BLS (business logic scripting): a backend model calling other models.

`EngineBls` is what the core gives a backend at load (`ModelContext.bls`). A call is submitted to
the server's event loop as an ordinary `Engine.infer`, so it is validated, batched by the callee's
batcher with everyone else's requests and counted in the callee's statistics. Tensors travel by
reference: the caller's numpy arrays become the callee's inputs, the callee's outputs come back.
Threading: `infer` blocks a backend worker thread (never the loop's own thread: that would
deadlock); `infer_async` awaits from an event loop on another thread (a python model's
`async def execute`). A caller holding a CPU execution slot gives it back while it waits
(core/cpu_slots.py): callees need slots too, and a budget full of waiting callers would deadlock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib

from packserve.core.cpu_slots import CpuSlots
from packserve.core.dispatch import Dispatcher
from packserve.errors import ExecutionTimeoutError, InvalidArgumentError, ModelExecutionError
from packserve.messages import InferRequest, InferResponse


class EngineBls:
    def __init__(
        self,
        dispatcher: Dispatcher,
        loop: asyncio.AbstractEventLoop,
        caller: str,
        cpu_slots: CpuSlots | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._loop = loop
        self._caller = caller
        self._cpu_slots = cpu_slots

    def _slot_released(self) -> contextlib.AbstractContextManager[None]:
        return self._cpu_slots.released() if self._cpu_slots is not None else contextlib.nullcontext()

    def infer(self, request: InferRequest, timeout_s: float | None = None) -> InferResponse:
        self._check(request)
        if _running_loop() is self._loop:
            raise ModelExecutionError(
                f"model '{self._caller}': a blocking BLS call cannot run on the server's event loop"
            )
        future = asyncio.run_coroutine_threadsafe(self._dispatcher.infer(request), self._loop)
        try:
            with self._slot_released():
                return future.result(timeout_s)
        except concurrent.futures.TimeoutError:  # the caller's execution deadline (isolated models)
            future.cancel()
            raise ExecutionTimeoutError(
                f"model '{self._caller}': BLS request to '{request.model_name}' did not finish "
                f"within the caller's execution deadline ({timeout_s:.1f} s left)"
            ) from None

    async def infer_async(self, request: InferRequest) -> InferResponse:
        self._check(request)
        if asyncio.get_running_loop() is self._loop:
            return await self._dispatcher.infer(request)
        future = asyncio.run_coroutine_threadsafe(self._dispatcher.infer(request), self._loop)
        with self._slot_released():  # the await runs on this (worker) thread's own loop
            return await asyncio.wrap_future(future)

    def _check(self, request: InferRequest) -> None:
        if request.model_name == self._caller:
            # Its instance would wait on its own queue for ever.
            raise InvalidArgumentError(f"model '{self._caller}': a BLS request cannot call the model itself")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
