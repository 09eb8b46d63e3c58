"""The scheduler of a model without dynamic batching: each request runs alone, in arrival order,
on whichever instance is free. Admission is still bounded by `max_pending`.

Threading: event-loop thread only (see scheduler_base).
"""

from __future__ import annotations

import asyncio
from collections import deque

from packserve.core.admission import DEFAULT_MAX_PENDING
from packserve.core.clock import Clock
from packserve.core.instances import InstancePool
from packserve.core.observer import InferenceObserver
from packserve.core.scheduler_base import SchedulerBase, Waiter
from packserve.messages import InferRequest, Tensor
from packserve.model_spec import ModelSpec


class DirectScheduler(SchedulerBase):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        version: str,
        pool: InstancePool,
        observer: InferenceObserver,
        clock: Clock | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__(
            spec, version=version, pool=pool, observer=observer, clock=clock, max_pending=max_pending
        )
        self._waiting: deque[Waiter] = deque()

    def _enqueue(self, request: InferRequest, future: asyncio.Future[dict[str, Tensor]]) -> None:
        request.timing.queue_start_ns = self._clock.now_ns()
        self._waiting.append((request, future))

    def _pump(self) -> None:
        waiting = self._waiting
        pool = self._pool
        while waiting and pool.free_count > 0:
            self._run_batch((waiting.popleft(),))

    def _take_all_waiting(self) -> list[Waiter]:
        taken = list(self._waiting)
        self._waiting.clear()
        return taken
