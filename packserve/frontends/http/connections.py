"""Connection hygiene for the HTTP front end: the limits one client may not exceed, the server's
view of its open connections (the cap, a graceful stop), the open-file limit, and giving the
memory of abandoned request bodies back to the system.

The defaults follow nginx and uvicorn: a request line or header block over its bound is refused
at once (414 / 431) and the connection closed; a client that is slow to send its headers or its
body is cut off (408, slowloris); an idle keep-alive connection is closed; above the connection cap
an idle keep-alive connection makes room, or the newcomer gets a fast 503.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import resource
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from packserve.frontends.http.protocol import HttpProtocol

log = logging.getLogger("packserve.http")

KIB = 1024


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_request_line_bytes: int = 8 * KIB  # the URL; past it 414 (nginx large_client_header_buffers)
    max_header_bytes: int = 32 * KIB  # all header lines together; past it 431
    max_headers: int = 100  # header lines; past it 431 (uvicorn/h11 and Go use about this)
    header_timeout_s: float = 30.0  # first byte of a request to the end of its headers; then 408
    body_timeout_s: float = 60.0  # the longest silence inside a body; then 408 (nginx client_body_timeout)
    send_timeout_s: float = 60.0  # the longest a client may leave our answers unread; then closed
    keep_alive_timeout_s: float = 75.0  # an idle keep-alive connection is closed (nginx's default)
    max_connections: int = 0  # open HTTP connections; 0: half the open-file limit (gRPC shares it)
    write_buffer_high_bytes: int = 1024 * KIB  # stop answering a client that does not read past this

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value < 0 or (value == 0 and item.name != "max_connections"):
                raise ValueError(f"ConnectionLimits.{item.name} must be positive, got {value}")

    def connection_cap(self) -> int:
        if self.max_connections > 0:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 65536
        return max(16, (soft - 256) // 2)


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as nginx's worker_rlimit_nofile and most
    servers do), so connections do not run out at 1,024. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. macOS refuses RLIM_INFINITY
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


class MemoryReturner:
    """glibc keeps freed heap memory for reuse; after a large request body is dropped half-way
    (a client sent 59 of 60 MiB and left), ask it to give free pages back, at most once a second."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._pending: asyncio.TimerHandle | None = None

    def body_dropped(self, size: int) -> None:
        if self._trim is None or size < 1024 * KIB or self._pending is not None:
            return
        self._pending = asyncio.get_running_loop().call_later(1.0, self._run)

    def _run(self) -> None:
        self._pending = None
        if self._trim is not None:
            self._trim(0)


def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # glibc only; musl and macOS have none
    except (OSError, AttributeError):
        return None


class ConnectionTracker:
    """The server's view of its connections: the cap, a graceful stop."""

    def __init__(self, cap: int = 0) -> None:
        self.connections: set[HttpProtocol] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.busy = 0
        self.cap = cap
        self.memory = MemoryReturner()

    def admit(self) -> bool:
        """Room for one more connection? At the cap the longest-idle keep-alive connection is
        closed to make room (its client reconnects at no cost); with none idle, no."""
        if self.cap <= 0 or len(self.connections) < self.cap:
            return True
        idle = [c for c in self.connections if c.idle_since is not None and not c.closing]
        if not idle:
            return False
        min(idle, key=lambda c: c.idle_since or 0.0).close_idle()
        return True

    def request_started(self) -> None:
        self.busy += 1
        self.idle.clear()

    def request_finished(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.idle.set()
