"""The worker processes the backends have started (isolated python models), so the server-wide
memory guard can count their memory with the server's own. Thread-safe."""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_pids: set[int] = set()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def register(pid: int) -> None:
    with _lock:
        _pids.add(pid)


def unregister(pid: int) -> None:
    with _lock:
        _pids.discard(pid)


def live_pids() -> list[int]:
    with _lock:
        return list(_pids)


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process (0 when it is gone or /proc is missing)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0
