"""POST /v2/pipelines/{model}: a raw image body in, one JSON document out, through a live server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import requests

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    BatchResult,
    ExecutionTimer,
    InstanceContext,
)
from packserve.core.engine import Engine, EngineOptions
from packserve.frontends.http import HttpServer
from tests.fakes.registry import BackendRegistry


class ByteLength(BackendModel):
    """Answers the length of each image it is sent, and its first byte as a string."""

    default_model_filename = "model.txt"

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        return _ByteLengthInstance()


class _ByteLengthInstance(BackendInstance):
    def execute(self, requests: object, timer: ExecutionTimer) -> BatchResult:
        results: BatchResult = []
        for request in requests:  # type: ignore[attr-defined]
            data = request.inputs["IMAGE"].reshape(-1)[0]
            results.append(
                {
                    "LENGTH": np.array([[len(data)]], dtype=np.int64),
                    "FIRST": np.array([[data[:1]]], dtype=object),
                }
            )
        return results


def _write_model(root: Path, backends: BackendRegistry) -> None:
    backends.add("byte_length", ByteLength)
    (root / "bytes" / "1").mkdir(parents=True)
    (root / "bytes" / "1" / "model.txt").write_text("x")
    (root / "bytes" / "config.pbtxt").write_text(
        """
backend: "byte_length"
max_batch_size: 4
input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "LENGTH" data_type: TYPE_INT64 dims: [ 1 ] }, { name: "FIRST" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
    )


@pytest.fixture
async def server_url(tmp_path: Path, backend_registry: BackendRegistry) -> AsyncIterator[str]:
    _write_model(tmp_path, backend_registry)
    engine = await Engine.start(EngineOptions(model_repository=tmp_path))
    server = HttpServer(engine, "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()
        await engine.shutdown()


async def test_raw_image_body_gives_one_json_document(server_url: str) -> None:
    reply = await asyncio.to_thread(
        requests.post, f"{server_url}/v2/pipelines/bytes", data=b"\xff\xd8fake-jpeg", timeout=10
    )
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["model_name"] == "bytes"
    assert document["outputs"]["LENGTH"] == [[11]]
    assert document["outputs"]["FIRST"] == [["\ufffd"]]


async def test_empty_body_and_unknown_pipeline_are_client_errors(server_url: str) -> None:
    empty = await asyncio.to_thread(requests.post, f"{server_url}/v2/pipelines/bytes", data=b"", timeout=10)
    assert empty.status_code == 400 and "0 bytes" in empty.json()["error"]
    unknown = await asyncio.to_thread(requests.post, f"{server_url}/v2/pipelines/nope", data=b"x", timeout=10)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
