"""What the schedulers of composite models (ensembles, region maps) share: bounded admission,
a count of requests in flight, and a drain on close. They run on the event loop and do their work
by sending sub-requests through the engine to other models' own schedulers."""

from __future__ import annotations

import abc
import asyncio
import contextlib

from packserve.core.clock import Clock, MonotonicClock
from packserve.core.dispatch import Dispatcher
from packserve.core.observer import InferenceObserver
from packserve.core.scheduler import DEFAULT_MAX_PENDING
from packserve.errors import QueueFullError, ServerShuttingDownError
from packserve.messages import InferRequest, Tensor
from packserve.model_spec import ModelSpec


class CompositeScheduler(abc.ABC):
    def __init__(
        self,
        spec: ModelSpec,
        version: str,
        dispatcher: Dispatcher,
        observer: InferenceObserver,
        clock: Clock | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._spec = spec
        self._version = version
        self._dispatcher = dispatcher
        self._observer = observer
        self._clock = clock or MonotonicClock()
        self._max_pending = max_pending
        self._pending = 0
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        return self._pending

    async def submit(self, request: InferRequest) -> dict[str, Tensor]:
        if self._closing:
            raise ServerShuttingDownError(f"model '{self._spec.name}' is unloading")
        if self._pending >= self._max_pending:
            raise QueueFullError(
                f"model '{self._spec.name}' has {self._pending} requests in flight (the limit); retry later"
            )
        self._pending += 1
        self._idle.clear()
        self._observer.queue_size_changed(self._spec.name, self._version, self._pending)
        try:
            return await self._run(request)
        finally:
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()
            self._observer.queue_size_changed(self._spec.name, self._version, self._pending)

    async def close(self, drain_timeout_s: float) -> None:
        self._closing = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=drain_timeout_s)

    @abc.abstractmethod
    async def _run(self, request: InferRequest) -> dict[str, Tensor]:
        """Do one admitted request's work; raise a PackserveError to fail it."""
