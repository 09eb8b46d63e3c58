"""What the schedulers of composite models (ensembles, region maps) share: bounded admission
(`core/admission.py`, as for every scheduler), and a drain on close. They run on the event loop and
do their work by sending sub-requests through the engine to other models' own schedulers."""

from __future__ import annotations

import abc

from packserve.core.admission import DEFAULT_MAX_PENDING, Admission
from packserve.core.clock import Clock, MonotonicClock
from packserve.core.dispatch import Dispatcher
from packserve.core.observer import InferenceObserver
from packserve.messages import InferRequest, Tensor
from packserve.model_spec import ModelSpec


class CompositeScheduler(abc.ABC):
    def __init__(
        self,
        spec: ModelSpec,
        *,
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
        self._admission = Admission(spec.name, version, max_pending)  # requests in flight

    @property
    def pending(self) -> int:
        return self._admission.pending

    async def submit(self, request: InferRequest) -> dict[str, Tensor]:
        admission = self._admission
        admission.check()
        admission.admit()
        self._observer.queue_size_changed(self._spec.name, self._version, admission.pending)
        try:
            return await self._run(request)
        finally:
            admission.release()
            self._observer.queue_size_changed(self._spec.name, self._version, admission.pending)

    async def close(self, drain_timeout_s: float) -> None:
        self._admission.close()
        await self._admission.drain(drain_timeout_s)

    @abc.abstractmethod
    async def _run(self, request: InferRequest) -> dict[str, Tensor]:
        """Do one admitted request's work; raise a PackserveError to fail it."""
