"""Fixtures: the fake engine served over gRPC, and an official tritonclient.grpc client for it.

Helpers live in uniquely named modules (grpc_fakes, grpc_server_thread), never imported as
`conftest`, because several test folders have a conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient
from grpc_fakes import FakeEngine
from grpc_server_thread import ServerThread


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
