"""A live `packserve serve` process for end-to-end tests, on free ports, stopped with SIGTERM.

`start_live_server` runs the real server as a subprocess (the same command line a user types),
waits for /v2/health/ready and returns a `LiveServer` with its HTTP, gRPC and metrics addresses.
The `live_server_factory` fixture in conftest.py wraps it and checks every server exits 0 on SIGTERM.
Nothing here is HTTP-specific: gRPC end-to-end tests can use `LiveServer.grpc_url` just the same.
(Named e2e_server, not conftest, so test modules can import it for types without a name clash.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import requests

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Another process may grab a port between our probe and the server's bind: retry with new ports.
START_ATTEMPTS = 3
_PORT_TAKEN_MARKERS = ("address already in use", "errno 98", "[errno 48]")


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the OS considers free right now (all probes held open together)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


class ServerStartError(RuntimeError):
    """The server exited or never became ready; `exit_code` is None if it was still running."""

    def __init__(self, message: str, log: str, exit_code: int | None) -> None:
        super().__init__(f"{message}\n--- server log (tail) ---\n{log[-4000:]}")
        self.log = log
        self.exit_code = exit_code


@dataclass
class LiveServer:
    """One running `packserve serve` process. Addresses are host:port, as tritonclient wants them."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    command: Sequence[str] = field(default_factory=tuple)
    exit_code: int | None = None

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def http_base(self) -> str:
        """For raw HTTP clients such as `requests`."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (graceful drain) and wait; the exit code. Kills and raises if it hangs."""
        if self.exit_code is not None:
            return self.exit_code
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.exit_code = self.process.wait(timeout=10)
            raise AssertionError(
                f"server did not exit within {timeout_s}s of SIGTERM\n{self.log()[-4000:]}"
            ) from None
        return self.exit_code


# The server is on loopback: never send probes through an HTTP proxy set in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def direct_http_session() -> requests.Session:
    """A `requests` session for raw HTTP to the server that ignores proxy settings."""
    session = requests.Session()
    session.trust_env = False
    return session


def _is_ready(base_url: str) -> bool:
    try:
        with _DIRECT.open(f"{base_url}/v2/health/ready", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def start_live_server(
    repository: Path,
    log_dir: Path,
    control_mode: str = "none",
    load_models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> LiveServer:
    """Start `python -m packserve serve` and return once /v2/health/ready answers 200."""
    last_error: ServerStartError | None = None
    for attempt in range(START_ATTEMPTS):
        http_port, grpc_port, metrics_port = free_ports(3)
        command = [
            sys.executable, "-m", "packserve", "serve",
            "--model-repository", str(repository),
            "--http-port", str(http_port),
            "--grpc-port", str(grpc_port),
            "--metrics-port", str(metrics_port),
            "--model-control-mode", control_mode,
        ]  # fmt: skip
        for name in load_models:
            command += ["--load-model", name]
        command += list(extra_args)
        log_path = log_dir / f"server-{http_port}-{attempt}.log"
        with log_path.open("wb") as log_file:
            # The server must not inherit the test's stdin; its output goes to a file we can show.
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        server = LiveServer(process, http_port, grpc_port, metrics_port, log_path, command)
        try:
            _wait_ready(server, ready_timeout_s)
            return server
        except ServerStartError as exc:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            last_error = exc
            if not any(marker in exc.log.lower() for marker in _PORT_TAKEN_MARKERS):
                raise
    assert last_error is not None
    raise last_error


def _wait_ready(server: LiveServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"server exited with {server.process.returncode} before ready",
                server.log(),
                server.process.returncode,
            )
        if _is_ready(server.http_base):
            return
        time.sleep(0.1)
    raise ServerStartError(f"server not ready after {timeout_s}s", server.log(), None)


class LiveServerFactory(Protocol):
    def __call__(
        self,
        repository: Path,
        control_mode: str = "none",
        load_models: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> LiveServer: ...


def stop_all_cleanly(started: Sequence[LiveServer]) -> None:
    """SIGTERM every server still running and fail unless each exited 0 (with its log's tail):
    a server that does not drain cleanly fails the module that started it."""
    failures = []
    for server in started:
        try:
            code = server.terminate()
        except AssertionError as exc:
            failures.append(str(exc))
            continue
        if code != 0:
            failures.append(f"server on port {server.http_port} exited with {code}\n{server.log()[-4000:]}")
    assert not failures, "\n\n".join(failures)
