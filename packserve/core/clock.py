"""Where the core reads time from: the real monotonic clock, or a fake one tests and the planner's
simulator drive by hand, so the same batching code runs in both."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Monotonic time in nanoseconds. Safe to call from any thread."""
        ...


class MonotonicClock:
    """The process's monotonic clock (`time.monotonic_ns`)."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.monotonic_ns()


class FakeClock:
    """A clock that only moves when told to: `set` jumps to a time, `advance` moves forward."""

    __slots__ = ("_now_ns",)

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns

    def now_ns(self) -> int:
        return self._now_ns

    def set(self, now_ns: int) -> None:
        if now_ns < self._now_ns:
            raise ValueError(f"a monotonic clock cannot go back from {self._now_ns} to {now_ns} ns")
        self._now_ns = now_ns

    def advance(self, delta_ns: int) -> None:
        if delta_ns < 0:
            raise ValueError(f"cannot advance a monotonic clock by a negative {delta_ns} ns")
        self._now_ns += delta_ns


# One shared instance: it holds no state.
MONOTONIC_CLOCK = MonotonicClock()
