"""When a model's batches are cheap, run them on the event-loop thread instead of a worker thread.

Why: handing a batch to a worker thread and back costs the loop a queue put, a thread wake-up, a
`call_soon_threadsafe` and, worst, GIL hand-offs: the worker needs the GIL for the backend's Python
around the native call and waits for the loop to let go of it, and every hand-off leaves both
threads running from cold caches. For a model that computes in tens of microseconds (a small ONNX
graph on the CPU) that round trip costs the loop more than the execution itself: on the 2-core
development machine, 'simple' at batch 8 cost the loop ~80 us more per request through the
workers than inline. For anything heavier the worker threads are what let executions overlap with
request parsing and with each other.

The cost of an execution is the CPU time of the thread that ran it: wall time is inflated by GIL
waits and by preemption on a busy host, neither of which says anything about the model. That
equals the time the loop is blocked only for backends whose instances declare themselves safe to
run inline (all their work on the calling thread: no sleeps, I/O, thread pools or device waits);
no other backend is ever considered. The measure on a worker is itself inflated by the contention
described above (up to ~3x), so it only pre-selects:

- on the workers, once `window` executions have been seen, a model whose median cost is under
  4 x threshold is tried inline;
- inline, it stays while the median of its last `window` costs is at most 2 x threshold (the
  hysteresis keeps a model near the line from flipping on every batch); a single execution over
  8 x threshold ends the trial at once, so a misjudged model blocks the loop once, not a window
  long. Each return to the workers doubles the executions seen before the next trial.

A small state machine fed only the costs it is given (no clock, no threads), so tests drive it
with numbers.
Threading: event-loop thread only (InstancePool calls it when a batch's outcome comes back).
"""

from __future__ import annotations

from collections import deque

# Executions looked at for each decision: the median of the last WINDOW costs, so that a lone
# outlier (a garbage collection, a page fault) moves nothing.
WINDOW = 16


class InlineExecutionPolicy:
    def __init__(self, threshold_ns: int, window: int = WINDOW) -> None:
        if threshold_ns < 0:
            raise ValueError(f"inline threshold must be >= 0 ns, got {threshold_ns}")
        self.threshold_ns = threshold_ns
        self._window = window
        self._costs: deque[int] = deque(maxlen=window)
        self._backoff = 1  # windows to fill before going inline again
        self._since_switch = 0
        self.inline = False
        self.switches = 0  # how often the decision changed (for logs and tests)
        self.decided_on_ns = 0  # the cost that made the last switch

    @property
    def enabled(self) -> bool:
        return self.threshold_ns > 0

    @property
    def median_ns(self) -> int:
        """Median cost of the recent executions in the current mode (0 before any)."""
        if not self._costs:
            return 0
        return sorted(self._costs)[len(self._costs) // 2]

    def record_worker_execution(self, cpu_ns: int) -> bool:
        """A batch ran on a worker thread and used `cpu_ns` of that thread's CPU time.
        True when this moved the model inline."""
        if not self.enabled or self.inline:
            return False
        self._costs.append(cpu_ns)
        self._since_switch += 1
        median_ns = self.median_ns
        if self._since_switch >= self._window * self._backoff and median_ns < 4 * self.threshold_ns:
            self._switch(inline=True, cost_ns=median_ns)
            return True
        return False

    def record_inline_execution(self, cpu_ns: int) -> bool:
        """A batch ran on the loop thread and used `cpu_ns` of its CPU time. True when this moved
        the model back to its worker threads."""
        if not self.inline:
            return False
        self._costs.append(cpu_ns)
        self._since_switch += 1
        median_ns = self.median_ns
        too_slow = cpu_ns > 8 * self.threshold_ns
        if too_slow or (len(self._costs) == self._window and median_ns > 2 * self.threshold_ns):
            # Back off: a model that keeps crossing the line is re-measured less and less often.
            self._backoff *= 2
            self._switch(inline=False, cost_ns=cpu_ns if too_slow else median_ns)
            return True
        return False

    def _switch(self, inline: bool, cost_ns: int) -> None:
        self.inline = inline
        self.switches += 1
        self.decided_on_ns = cost_ns
        self._since_switch = 0
        self._costs.clear()
