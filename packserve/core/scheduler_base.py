"""What both schedulers share: admission bookkeeping, handing batches to the instance pool,
resolving each request's future, and draining on close.

Threading: everything here runs on the event-loop thread. A request belongs to the scheduler from
`submit` until its future is resolved; while its batch executes it belongs to an instance worker.
Instead of a long-lived task polling a queue, a scheduler "pumps": a pass of `_pump` runs (on the
loop, coalesced with `call_soon`) after each arrival, each finished batch and each timer, and starts
as many batches as there are free instances. That keeps the hot path to one future per request.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from functools import partial

from packserve.core.admission import DEFAULT_MAX_PENDING, Admission
from packserve.core.clock import MONOTONIC_CLOCK, Clock
from packserve.core.instances import ExecutionOutcome, InstancePool
from packserve.core.observer import InferenceObserver
from packserve.errors import PackserveError, UnavailableError
from packserve.messages import InferRequest, Tensor
from packserve.model_spec import ModelSpec

# A request waiting for its outputs, with the future its caller awaits.
Waiter = tuple[InferRequest, "asyncio.Future[dict[str, Tensor]]"]


class SchedulerBase(abc.ABC):
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
        self._spec = spec
        self._model = spec.name
        self._version = version
        self._pool = pool
        self._observer = observer
        self._clock = clock or MONOTONIC_CLOCK
        self._admission = Admission(spec.name, version, max_pending)  # waiting + executing
        self._batching = spec.batching
        self._pump_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        """Requests waiting or executing."""
        return self._admission.pending

    async def submit(self, request: InferRequest) -> dict[str, Tensor]:
        """Queue a validated request and return its outputs; raises a PackserveError."""
        self._admission.check()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Tensor]] = loop.create_future()
        self._enqueue(request, future)  # raises before anything is counted
        self._admission.admit()
        if not self._pump_scheduled:
            # Coalesce: arrivals within one loop iteration are decided together (and reported to
            # the observers together, by the pump).
            self._pump_scheduled = True
            loop.call_soon(self._scheduled_pump)
        return await future

    async def close(self, drain_timeout_s: float) -> None:
        """Refuse new requests, let queued and executing ones finish for up to `drain_timeout_s`,
        then fail whatever is left with UnavailableError. The pool stays open (its owner closes
        it)."""
        admission = self._admission
        admission.close()
        if admission.pending > 0:
            self._pump()  # may answer some at once (queue timeouts due)
            if not await admission.drain(drain_timeout_s):
                self._abandon()
        self._stop_timers()

    # --- for subclasses -------------------------------------------------------------------------

    @abc.abstractmethod
    def _enqueue(self, request: InferRequest, future: asyncio.Future[dict[str, Tensor]]) -> None:
        """Admit one request into the waiting structure (raise to refuse it)."""

    @abc.abstractmethod
    def _pump(self) -> None:
        """Start what can start now."""

    @abc.abstractmethod
    def _take_all_waiting(self) -> list[Waiter]:
        """Remove every waiting (not executing) request."""

    def _stop_timers(self) -> None:  # noqa: B027 - only the dynamic batcher has timers
        """Cancel pending timers once closed."""

    def _run_batch(self, waiters: Sequence[Waiter]) -> None:
        """Hand a batch to a free instance; callers whose wait was cancelled are dropped first."""
        requests: list[InferRequest] = []
        futures: list[asyncio.Future[dict[str, Tensor]]] = []
        dropped = 0
        rows = 0
        batching = self._batching
        for request, future in waiters:
            if future.done():  # cancelled by its caller (client went away): skip the work
                dropped += 1
                continue
            requests.append(request)
            futures.append(future)
            rows += request.batch_size(batching)
        if dropped:
            self._admission.release(dropped)
            self._changed()
        if requests:
            self._pool.start(requests, partial(self._finish, requests, futures), rows=rows)

    def _fail(self, waiters: Sequence[Waiter], make_error: type[PackserveError], message: str) -> None:
        """Fail waiting requests that never ran (timed out, abandoned)."""
        for _, future in waiters:
            if not future.done():
                future.set_exception(make_error(message))
        self._admission.release(len(waiters))
        self._changed()

    def _changed(self) -> None:
        self._observer.queue_size_changed(self._model, self._version, self._admission.pending)

    # --- internals ------------------------------------------------------------------------------

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self._observer.queue_size_changed(self._model, self._version, self._admission.pending)
        self._pump()

    def _finish(
        self,
        requests: list[InferRequest],
        futures: list[asyncio.Future[dict[str, Tensor]]],
        outcome: ExecutionOutcome,
    ) -> None:
        # Runs on the loop thread when an instance hands a batch back.
        for future, result in zip(futures, outcome.results, strict=True):
            if future.done():
                continue
            if isinstance(result, PackserveError):
                future.set_exception(result)
            else:
                future.set_result(result)
        if not outcome.raised:
            self._observer.execution_finished(self._model, self._version, outcome.rows, requests[0].timing)
        self._admission.release(len(requests))
        self._changed()
        self._pump()

    def _abandon(self) -> None:
        waiting = self._take_all_waiting()
        if waiting:
            self._fail(
                waiting,
                UnavailableError,
                f"model '{self._model}' version {self._version} was unloaded before the request ran",
            )
