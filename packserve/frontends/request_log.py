"""One log line per failed request, for both front ends, rate-limited; per-request detail at
--log-verbose >= 1.

Levels: a client's mistake (4xx) is INFO with the reason; an overloaded or stopping server (503)
is WARNING; a server or model failure (other 5xx) is ERROR with the traceback, the model's own
exception included (it is the `__cause__` of the ModelExecutionError).

A flood of bad requests must not fill a disk: each level has a token bucket (`burst` lines at
once, then `per_second`); lines over it are counted, and the next line that gets through says how
many were dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from packserve.frontends.status import http_status

logger = logging.getLogger("packserve.requests")

_verbosity = 0


def set_verbosity(level: int) -> None:
    """Triton's --log-verbose level: 0 none, 1 one line per request, 2 also its tensors."""
    global _verbosity
    _verbosity = max(0, level)


def verbosity() -> int:
    return _verbosity


class TokenBucket:
    def __init__(self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = float(burst)
        self._rate = per_second
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()  # the gRPC and HTTP front ends may log from several threads
        self.dropped = 0

    def take(self) -> int | None:
        """None when over the limit (counted); otherwise how many were dropped since the last take."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1.0:
                self.dropped += 1
                return None
            self._tokens -= 1.0
            dropped, self.dropped = self.dropped, 0
            return dropped


class FailedRequestLog:
    def __init__(
        self, burst: int = 50, per_second: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets = {
            level: TokenBucket(burst, per_second, clock)
            for level in (logging.INFO, logging.WARNING, logging.ERROR)
        }

    def failed(self, protocol: str, target: str, error: BaseException, status: int | None = None) -> None:
        status = http_status(error) if status is None else status
        if status < 500:
            level = logging.INFO
        elif status == 503:
            level = logging.WARNING
        else:
            level = logging.ERROR
        if not logger.isEnabledFor(level):
            return
        dropped = self._buckets[level].take()
        if dropped is None:
            return
        suffix = f" ({dropped} similar lines dropped by the rate limit)" if dropped else ""
        logger.log(
            level,
            "%s %s failed with %d: %s%s",
            protocol,
            target,
            status,
            error,
            suffix,
            exc_info=error if level == logging.ERROR else None,
        )


FAILED = FailedRequestLog()


def request_done(protocol: str, target: str, status: int, started: float, detail: str = "") -> None:
    """At --log-verbose >= 1: one DEBUG line per request (detail only at >= 2)."""
    milliseconds = (time.perf_counter() - started) * 1000
    extra = f" {detail}" if detail and _verbosity >= 2 else ""
    logger.debug("%s %s -> %d in %.2f ms%s", protocol, target, status, milliseconds, extra)
