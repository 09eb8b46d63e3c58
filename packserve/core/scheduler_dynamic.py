"""The dynamic batcher: queues requests by priority and runs `decide_batch` whenever an instance is
free, so N instances run N batches at once.

Threading: event-loop thread only (see scheduler_base).
"""

from __future__ import annotations

import asyncio

from packserve.core.admission import DEFAULT_MAX_PENDING
from packserve.core.batching import Batch, PendingItem, PendingQueue, Wait, decide_batch, queue_policy
from packserve.core.clock import Clock
from packserve.core.instances import InstancePool
from packserve.core.observer import InferenceObserver
from packserve.core.scheduler_base import SchedulerBase, Waiter
from packserve.errors import InvalidArgumentError, QueueFullError, RequestTimeoutError
from packserve.messages import InferRequest, Tensor
from packserve.model_spec import BatchingPolicy, ModelSpec


class DynamicBatchScheduler(SchedulerBase):
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
        if spec.dynamic_batching is None or not spec.batching:
            raise ValueError(f"model '{spec.name}' has no dynamic batching to schedule")
        self._policy: BatchingPolicy = spec.dynamic_batching
        self._max_batch_size = spec.max_batch_size
        self._queue: PendingQueue[Waiter] = PendingQueue.from_policy(self._policy)
        levels = self._queue.level_count
        self._priorities_on = self._policy.priority_levels > 0
        self._default_level = min(max(1, self._policy.default_priority_level), levels)
        # Per level: (default timeout us, whether a request may override it, max_queue_size).
        self._level_rules = [
            (p.default_timeout_us, p.allow_timeout_override, p.max_queue_size)
            for p in (queue_policy(self._policy, level) for level in range(1, levels + 1))
        ]
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at_ns = 0

    def _enqueue(self, request: InferRequest, future: asyncio.Future[dict[str, Tensor]]) -> None:
        level = self._level_of(request)
        if self._queue.is_full(level):
            raise QueueFullError(
                f"model '{self._model}' queue is full (max_queue_size {self._level_rules[level - 1][2]})"
            )
        now = self._clock.now_ns()
        default_timeout_us, allow_override, _ = self._level_rules[level - 1]
        timeout_us = request.timeout_us if allow_override and request.timeout_us > 0 else default_timeout_us
        deadline_ns = now + timeout_us * 1000 if timeout_us > 0 else 0
        request.timing.queue_start_ns = now
        rows = request.batch_size(True)
        self._queue.push(PendingItem(now, rows, deadline_ns, level, (request, future)))

    def _level_of(self, request: InferRequest) -> int:
        priority = request.priority
        if not self._priorities_on or priority == 0:
            return self._default_level
        if not 1 <= priority <= self._queue.level_count:
            raise InvalidArgumentError(
                f"model '{self._model}': priority {priority} is out of range, expected 0 (default) "
                f"or 1..{self._queue.level_count}"
            )
        return priority

    def _pump(self) -> None:
        queue = self._queue
        pool = self._pool
        now = self._clock.now_ns()
        while pool.free_count > 0:
            decision = decide_batch(queue, now, self._policy, self._max_batch_size)
            if decision.rejected:
                self._reject(decision.rejected)
            action = decision.action
            if isinstance(action, Batch):
                self._run_batch([item.payload for item in action.items])
                continue
            if isinstance(action, Wait):
                self._arm_timer(action.until_ns, now)
            return
        # Every instance is busy: still apply queue timeouts so rejected callers hear on time.
        rejected = queue.expire(now)
        if rejected:
            self._reject(rejected)
        deadline_ns = queue.next_deadline_ns()
        if deadline_ns:
            self._arm_timer(deadline_ns, now)

    def _reject(self, items: list[PendingItem[Waiter]]) -> None:
        for item in items:
            _, future = item.payload
            if not future.done():
                future.set_exception(
                    RequestTimeoutError(f"model '{self._model}': request timed out in the queue")
                )
        self._admission.release(len(items))
        self._changed()

    def _arm_timer(self, until_ns: int, now_ns: int) -> None:
        if self._timer is not None:
            if self._timer_at_ns <= until_ns:
                return  # an earlier wake-up is already set; it will decide again
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._timer_at_ns = until_ns
        self._timer = loop.call_later(max(0, until_ns - now_ns) / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _take_all_waiting(self) -> list[Waiter]:
        return [item.payload for item in self._queue.remove_all()]

    def _stop_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
