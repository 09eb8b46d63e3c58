"""Fixtures: the fake engine (tests.fakes.engine) served over gRPC, and an official
tritonclient.grpc client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient

from packserve.frontends.grpc import GrpcOptions
from tests.fakes.engine import FakeEngine
from tests.frontends.grpc.grpc_server_thread import ServerThread


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(params=["native", "grpcio"])
def server(engine: FakeEngine, request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """The fake engine over each gRPC transport (--grpc-implementation): same answers on both."""
    running = ServerThread(GrpcOptions(implementation=request.param))
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
