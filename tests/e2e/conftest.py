"""Fixtures for end-to-end tests against a live `packserve serve` process.

`live_server_factory(repository, control_mode=..., load_models=..., extra_args=...)` starts the real
server on free ports and returns a `LiveServer` (see e2e_server.py). At the end of the test module
every server it started gets SIGTERM and must exit with status 0: a server that does not drain
cleanly fails the module. Use it for HTTP and gRPC tests alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import LiveServer, LiveServerFactory, start_live_server, stop_all_cleanly


@pytest.fixture(scope="module")
def live_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServerFactory]:
    """Starts servers for one test module; at its end, SIGTERMs each and checks it exited 0
    (servers a test already stopped are checked too)."""
    log_dir = tmp_path_factory.mktemp("server-logs")
    started: list[LiveServer] = []

    def start(
        repository: Path,
        control_mode: str = "none",
        load_models: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> LiveServer:
        server = start_live_server(repository, log_dir, control_mode, load_models, extra_args)
        started.append(server)
        return server

    yield start
    stop_all_cleanly(started)


@pytest.fixture(scope="session")
def example_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository (simple, simple_v3, classifier, python_add, simple_ensemble).
    Shared read-only: tests that change a repository build their own."""
    return build_simple_repository(tmp_path_factory.mktemp("example-repository"))


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpclient.InferenceServerClient]:
    """A tritonclient HTTP client of the module's `server` fixture (64 connections for async_infer)."""
    triton = httpclient.InferenceServerClient(server.http_url, concurrency=64)
    try:
        yield triton
    finally:
        triton.close()
