"""Start the real Triton 2.51 (scripts/install_triton_reference.sh) and packserve on one repository."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.differential.twin_repository import MODELS, build_twin_repository

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_CONFIG = "local,size=1048576"
TRITONSERVER = Path(
    os.environ.get("PACKSERVE_TRITONSERVER", REPO_ROOT / ".tools/tritonserver/bin/tritonserver")
)


def _reference_missing() -> str | None:
    if not TRITONSERVER.exists():
        return f"reference Triton not installed ({TRITONSERVER}); run scripts/install_triton_reference.sh"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import numpy"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "the python backend stub needs numpy in the system Python (apt-get install python3-numpy)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _reference_missing()
    for item in items:
        if "differential" in str(item.fspath):
            item.add_marker(pytest.mark.triton)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Server:
    name: str
    url: str  # host:port of the HTTP endpoint
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://{self.url}"


def _wait_ready(server: Server, timeout_s: float = 180.0) -> None:
    # Generous: Triton starts a stub process per python model, slow on a loaded machine.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            if all(
                requests.get(f"{server.base}/v2/models/{m}/ready", timeout=1).status_code == 200
                for m in MODELS
            ):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.25)
    server.process.kill()
    raise RuntimeError(f"{server.name} did not become ready; log:\n{server.log.read_text()[-4000:]}")


def _start(name: str, command: list[str], http_port: int, log: Path) -> Server:
    handle = log.open("wb")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent)
    return Server(name, f"127.0.0.1:{http_port}", process, log)


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# Another process may take a probed port before a server binds it (ports are probed in the
# ephemeral range, which outgoing connections use too): start both again on new ports.
START_ATTEMPTS = 3


def _start_pair(repository: Path, work: Path) -> tuple[Server, Server]:
    loads = [arg for model in MODELS for arg in ("--load-model", model)]
    t_http, t_grpc, t_metrics, p_http, p_grpc, p_metrics = _free_ports(6)
    triton = _start(
        "triton",
        [
            str(TRITONSERVER),
            "--model-repository",
            str(repository),
            "--model-control-mode",
            "explicit",
            *loads,
            "--http-port",
            str(t_http),
            "--grpc-port",
            str(t_grpc),
            "--metrics-port",
            str(t_metrics),
            "--backend-directory",
            str(TRITONSERVER.parent.parent / "backends"),
            # The local response cache, for models that enable it (both servers alike).
            "--cache-config",
            CACHE_CONFIG,
            "--cache-directory",
            str(TRITONSERVER.parent.parent / "caches"),
        ],
        t_http,
        work / "triton.log",
    )
    packserve = _start(
        "packserve",
        [
            sys.executable,
            "-c",
            "from packserve.cli import main; main()",
            "serve",
            "--model-repository",
            str(repository),
            "--model-control-mode",
            "explicit",
            *loads,
            "--http-port",
            str(p_http),
            "--grpc-port",
            str(p_grpc),
            "--metrics-port",
            str(p_metrics),
            "--cache-config",
            CACHE_CONFIG,
        ],
        p_http,
        work / "packserve.log",
    )
    try:
        _wait_ready(triton)
        _wait_ready(packserve)
    except BaseException:
        _stop(triton)
        _stop(packserve)
        raise
    return triton, packserve


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """(triton, packserve), both serving the twin repository in explicit model-control mode."""
    work = tmp_path_factory.mktemp("differential")
    repository = build_twin_repository(work / "repository")
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            triton, packserve = _start_pair(repository, work)
            break
        except RuntimeError as error:
            if attempt == START_ATTEMPTS or "already in use" not in str(error).lower():
                raise
    try:
        yield triton, packserve
    finally:
        _stop(triton)
        _stop(packserve)
