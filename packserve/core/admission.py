"""Admission: how many requests one model version holds at once, and the two ways it refuses one.

Every scheduler admits through one `Admission`: the backend schedulers (direct and dynamic batcher)
and the composite ones (ensemble, region map). A request counts from its admission until its answer
(waiting + executing). Two refusals, each with its own error, both answered at once:
- the version is unloading: `UnavailableError` (503 / UNAVAILABLE);
- the version already holds its bound: `InFlightLimitError` (503 / UNAVAILABLE). The dynamic
  batcher's own `max_queue_size` (Triton's field) is a different limit, with its own error
  (`QueueFullError`).

Threading: event-loop thread only.
"""

from __future__ import annotations

import asyncio

from packserve.errors import InFlightLimitError, UnavailableError
from packserve.model_spec import ModelSpec

# The server's bound on the requests one model version holds (EngineOptions.max_pending_per_model).
DEFAULT_MAX_PENDING = 4096
# Queued work per instance, in batches, before a new request is refused (503) by default.
DEFAULT_QUEUE_BATCHES_PER_INSTANCE = 4
# Never fewer pending requests than this by default: a few dozen closed-loop clients still fit.
MIN_DEFAULT_QUEUE = 64


class Admission:
    """The count of requests a model version holds, its bound, and its drain on close."""

    def __init__(self, model: str, version: str, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._model = model
        self._version = version
        self._max_pending = max_pending
        self._pending = 0
        self._closing = False
        self._drained: asyncio.Future[None] | None = None

    @property
    def pending(self) -> int:
        """Requests admitted and not yet answered."""
        return self._pending

    def check(self) -> None:
        """Raise the refusal a new request gets now, if any; counts nothing (`admit` does)."""
        if self._closing:
            raise UnavailableError(f"model '{self._model}' version {self._version} is unloading")
        if self._pending >= self._max_pending:
            raise InFlightLimitError(
                f"model '{self._model}' queue is full ({self._pending} requests pending, "
                f"limit {self._max_pending})"
            )

    def admit(self) -> None:
        """Count one request that passed `check` (and whatever the scheduler checks itself)."""
        self._pending += 1

    def release(self, count: int = 1) -> None:
        """`count` admitted requests were answered (or dropped)."""
        self._pending -= count
        if self._pending == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def close(self) -> None:
        """Refuse every new request from now on."""
        self._closing = True

    async def drain(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for every admitted request to be answered; True when they were."""
        if self._pending == 0:
            return True
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), max(0.0, timeout_s))
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return False
        return True


def admission_bound(spec: ModelSpec, instances: int, ceiling: int) -> int:
    """How many requests a backend model holds (waiting + executing) before it answers 503.

    Without a bound, overload queues thousands deep: every admitted request waits seconds and the
    refusals come late. So when the config sets no `max_queue_size`, the bound follows what the
    model can work off quickly: a few batches per instance (never under MIN_DEFAULT_QUEUE, never
    over the server's `ceiling`). A config's `max_queue_size` governs the waiting queue itself
    (the dynamic batcher enforces it); then only the server's ceiling applies here.
    """
    batching = spec.dynamic_batching
    if batching is not None and (
        batching.default_queue_policy.max_queue_size > 0
        or any(p.max_queue_size > 0 for p in batching.priority_queue_policy.values())
    ):
        return ceiling
    derived = DEFAULT_QUEUE_BATCHES_PER_INSTANCE * max(1, instances) * max(1, spec.max_batch_size)
    return min(ceiling, max(MIN_DEFAULT_QUEUE, derived))
