"""`packserve serve` as a child process: free ports, wait until the models are ready, SIGTERM to stop.

The suite owns the process from `start` to `stop`; its output goes to a log file in the results
folder so a failed start can be explained.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from packserve.errors import UnavailableError

# Other engineers run servers on this machine: pick from a high range, checked free at run time.
PORT_RANGE = (30000, 39999)


@dataclass(frozen=True, slots=True)
class ServerPorts:
    http: int
    grpc: int
    metrics: int


def pick_free_ports(count: int = 3, port_range: tuple[int, int] = PORT_RANGE) -> list[int]:
    """`count` distinct ports in `port_range` that nothing listens on right now."""
    chosen: list[int] = []
    candidates = list(range(port_range[0], port_range[1] + 1))
    random.shuffle(candidates)
    for port in candidates:
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise UnavailableError(f"no {count} free ports in {port_range[0]}-{port_range[1]}")


class ServerProcess:
    def __init__(
        self,
        repository: Path,
        ports: ServerPorts,
        log_path: Path,
        load_models: Sequence[str],
        server_args: Sequence[str] = (),
    ) -> None:
        self.repository = repository
        self.server_args = tuple(server_args)  # more `packserve serve` flags
        # Explicit model control: only these models load, so idle models cost the sweep nothing.
        self.load_models = tuple(load_models)
        self.ports = ports
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None  # set by `stop`

    @property
    def http_url(self) -> str:
        return f"localhost:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "packserve", "serve",
            "--model-repository", str(self.repository),
            "--http-port", str(self.ports.http),
            "--grpc-port", str(self.ports.grpc),
            "--metrics-port", str(self.ports.metrics),
            "--model-control-mode", "explicit",
            *(arg for model in self.load_models for arg in ("--load-model", model)),
            *self.server_args,
        ]  # fmt: skip

    def start(self, models: Sequence[str], timeout_s: float) -> None:
        """Start the server; return once it and every model in `models` answer ready."""
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        pending = ["/v2/health/ready", *(f"/v2/models/{model}/ready" for model in models)]
        while pending:
            status = self._process.poll()
            if status is not None:
                tail = self._log_tail()
                raise UnavailableError(f"packserve serve exited with {status} while starting: {tail}")
            if _answers_ok(f"http://127.0.0.1:{self.ports.http}{pending[0]}"):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                self.stop(timeout_s=10.0)
                raise UnavailableError(
                    f"packserve serve: {pending[0]} not ready after {timeout_s:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.25)

    def statistics_listed(self) -> bool:
        """Whether the server lists the `statistics` extension (perf_analyzer then asks for it)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.http}/v2", timeout=5) as reply:
                return "statistics" in json.load(reply).get("extensions", [])
        except (OSError, ValueError):
            return False

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait for the drain; SIGKILL only if it does not exit in time. The exit status."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        self.returncode = process.returncode
        return self.returncode

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_server(
    repository: Path,
    models: Sequence[str],
    load_models: Sequence[str],
    log_path: Path,
    timeout_s: float = 180.0,
) -> Iterator[ServerProcess]:
    """A started server on fresh free ports, loading `load_models` and waiting until `models` are
    ready; stopped with SIGTERM however the block ends."""
    http, grpc, metrics = pick_free_ports(3)
    server = ServerProcess(repository, ServerPorts(http, grpc, metrics), log_path, load_models)
    try:
        server.start(models, timeout_s)
        yield server
    finally:
        server.stop()
