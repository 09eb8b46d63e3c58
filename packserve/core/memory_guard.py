"""The server-wide memory guard (`--max-memory`): shed new requests with a 503 while the server's
resident memory, its isolated model workers included, is above the limit, so that a leak or a
burst of large requests is answered with "try later" before the kernel's OOM killer ends the pod.

Memory is read from /proc (a few microseconds per process) at most every SAMPLE_INTERVAL_S, on
the event loop, when a request arrives; requests already admitted are never failed by it.
"""

from __future__ import annotations

import logging
import time

from packserve.backends import worker_processes
from packserve.errors import ServerOverloadedError

log = logging.getLogger("packserve.memory")

SAMPLE_INTERVAL_S = 0.05


def server_rss_bytes() -> int:
    """Resident memory of this process plus its isolated python-model workers."""
    total = worker_processes.rss_bytes()
    for pid in worker_processes.live_pids():
        total += worker_processes.rss_bytes(pid)
    return total


class MemoryGuard:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._sampled_at = 0.0
        self._used = 0
        self._shedding = False

    def admit(self) -> None:
        """Raise ServerOverloadedError while memory is above the limit. Call it on the loop."""
        if not self.limit_bytes:
            return
        now = time.monotonic()
        if now - self._sampled_at >= SAMPLE_INTERVAL_S:
            self._sampled_at = now
            self._used = server_rss_bytes()
            over = self._used > self.limit_bytes
            if over != self._shedding:
                self._shedding = over
                log.warning(
                    "memory %.0f MiB is %s --max-memory %.0f MiB: %s new requests",
                    self._used / 2**20,
                    "above" if over else "back under",
                    self.limit_bytes / 2**20,
                    "shedding" if over else "admitting",
                )
        if self._shedding:
            raise ServerOverloadedError(
                f"server memory {self._used / 2**20:.0f} MiB is above --max-memory "
                f"{self.limit_bytes / 2**20:.0f} MiB; request shed, retry later"
            )
