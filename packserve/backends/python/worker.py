"""One worker process of an isolated python-model instance, seen from the server.

Started as `python -m packserve.backends.python.stub <fd>` with one end of a socket pair; control
messages are small pickled dicts (tensors travel in shared memory, never through here). The
environment is the server's, so the worker imports the same packserve and the model's packages.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from packserve.backends import worker_processes

_POLL_MS = 50


class WorkerDied(Exception):
    """The worker process is gone; the message says how ("exited with code 1")."""


class WorkerProcess:
    def __init__(self, description: str) -> None:
        self.description = description
        parent_end, child_end = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "packserve.backends.python.stub", str(child_end.fileno())],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                # Its own process group: a terminal's Ctrl-C reaches the server, which stops it.
                start_new_session=True,
            )
        finally:
            child_end.close()
        self._conn = Connection(parent_end.detach())
        # One poll object for the life of the worker: Connection.poll builds a selector per call.
        self._poller = select.poll()
        self._poller.register(self._conn.fileno(), select.POLLIN)
        self.pid = self._process.pid
        worker_processes.register(self.pid)

    def alive(self) -> bool:
        return self._process.poll() is None

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
        except OSError:
            raise WorkerDied(self._how_it_ended()) from None

    def receive(self, watch: Callable[[], None]) -> dict[str, Any]:
        """The next message; between polls, `watch` may raise (deadline, memory). Raises
        WorkerDied when the process ends first."""
        while True:
            try:
                if self._poller.poll(_POLL_MS):
                    message: dict[str, Any] = pickle.loads(self._conn.recv_bytes())
                    return message
            except (EOFError, OSError):
                raise WorkerDied(self._how_it_ended()) from None
            if not self.alive():
                raise WorkerDied(self._how_it_ended())
            watch()

    def rss_bytes(self) -> int:
        return worker_processes.rss_bytes(self.pid)

    def kill(self) -> None:
        """SIGKILL, reap, release the pipe. Safe to call more than once."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5.0)
        worker_processes.unregister(self.pid)
        with contextlib.suppress(OSError):
            self._conn.close()

    def _how_it_ended(self) -> str:
        try:
            code = self._process.wait(1.0)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        worker_processes.unregister(self.pid)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with code {code}"
