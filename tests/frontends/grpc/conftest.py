"""Fixtures: the fake engine (tests.fakes.engine) served over gRPC, and an official
tritonclient.grpc client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient

from tests.fakes.engine import FakeEngine
from tests.frontends.grpc.grpc_server_thread import ServerThread


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(engine: FakeEngine) -> Iterator[ServerThread]:
    running = ServerThread()
    try:
        running.start(engine)
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(server.url)
    try:
        yield triton
    finally:
        triton.close()
