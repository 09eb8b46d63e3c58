"""System shared memory over HTTP and gRPC against a live `packserve serve`: register, status,
inference with inputs and outputs in regions, unregister; every bad offset, size or region is a
client error and the server keeps serving; perf_analyzer --shared-memory system runs unmodified.
CUDA shared memory is refused with the reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.e2e_perf_analyzer import needs_perf_analyzer, run_perf_analyzer
from tests.e2e.e2e_server import LiveServer, LiveServerFactory

A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.full((1, 16), 3, dtype=np.int32)


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, example_repository: Path) -> LiveServer:
    return live_server_factory(example_repository)


@pytest.fixture
def regions() -> Iterator[tuple[str, shared_memory.SharedMemory, shared_memory.SharedMemory]]:
    """An input region holding A then B, and an output region; the key is unique per test."""
    key = f"packserve_test_{uuid.uuid4().hex[:12]}"
    inputs = shared_memory.SharedMemory(key + "_in", create=True, size=128)
    outputs = shared_memory.SharedMemory(key + "_out", create=True, size=128)
    np.ndarray((2, 16), np.int32, inputs.buf)[:] = np.concatenate([A, B])
    try:
        yield key, inputs, outputs
    finally:
        for region in (inputs, outputs):
            region.close()
            region.unlink()


def _output(region: shared_memory.SharedMemory, offset: int) -> np.ndarray:
    return np.ndarray((1, 16), np.int32, region.buf, offset=offset).copy()


def test_http_register_status_infer_unregister(server: LiveServer, regions) -> None:
    key, _, out = regions
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        client.register_system_shared_memory("in", f"/{key}_in", 128)
        client.register_system_shared_memory("out", f"/{key}_out", 128)
        status = {r["name"]: r for r in client.get_system_shared_memory_status()}
        assert status["in"] == {"name": "in", "key": f"/{key}_in", "offset": 0, "byte_size": 128}
        inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_shared_memory("in", 64)
        inputs[1].set_shared_memory("in", 64, offset=64)
        outputs = [httpclient.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
        outputs[0].set_shared_memory("out", 64)
        outputs[1].set_shared_memory("out", 64, offset=64)
        result = client.infer("simple", inputs, outputs=outputs)
        # As Triton: the data is in the region; the response says only name, datatype and shape.
        assert result.get_output("OUTPUT0") == {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16]}
        np.testing.assert_array_equal(_output(out, 0), A + B)
        np.testing.assert_array_equal(_output(out, 64), A - B)
        client.unregister_system_shared_memory("in")
        assert [r["name"] for r in client.get_system_shared_memory_status()] == ["out"]
        client.unregister_system_shared_memory()
        assert client.get_system_shared_memory_status() == []
    finally:
        client.unregister_system_shared_memory()
        client.close()


def test_grpc_register_status_infer_unregister(server: LiveServer, regions) -> None:
    key, _, out = regions
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.register_system_shared_memory("in", f"/{key}_in", 128)
        client.register_system_shared_memory("out", f"/{key}_out", 64, offset=64)
        with pytest.raises(InferenceServerException, match="already in manager"):
            client.register_system_shared_memory("in", f"/{key}_in", 128)
        status = client.get_system_shared_memory_status(as_json=True)["regions"]
        assert status["out"]["offset"] == "64" and status["out"]["byte_size"] == "64"
        inputs = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_shared_memory("in", 64)
        inputs[1].set_data_from_numpy(B)  # one input inline, one in shared memory
        outputs = [grpcclient.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
        outputs[0].set_shared_memory("out", 64)
        result = client.infer("simple", inputs, outputs=outputs)
        np.testing.assert_array_equal(_output(out, 64), A + B)  # region "out" starts at byte 64
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)
    finally:
        client.unregister_system_shared_memory()
        client.close()


def _infer_body(region: str, offset: int, size: int, out: tuple[int, int] | None = None) -> dict:
    inputs = [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16],
         "parameters": {"shared_memory_region": region, "shared_memory_offset": offset,
                        "shared_memory_byte_size": size}},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16},
    ]  # fmt: skip
    body: dict = {"inputs": inputs}
    if out is not None:
        body["outputs"] = [
            {"name": "OUTPUT0", "parameters": {"shared_memory_region": "out", "shared_memory_offset": out[0],
                                               "shared_memory_byte_size": 64}},
            {"name": "OUTPUT1", "parameters": {"shared_memory_region": "out", "shared_memory_offset": out[1],
                                               "shared_memory_byte_size": 64}},
        ]  # fmt: skip
    return body


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        (("register", {"key": "/packserve_no_such_key", "offset": 0, "byte_size": 64}), 400, "Unable to open"),
        (("register", {"key": "/../etc/passwd", "offset": 0, "byte_size": 64}), 400, "Unable to open"),
        (("register", {"key": "KEY_in", "offset": 100, "byte_size": 64}), 400, "Invalid shared memory region"),
        (("register", {"key": "KEY_in", "offset": -1, "byte_size": 64}), 400, "Invalid shared memory region"),
        (("infer", _infer_body("in", 100, 64)), 400, "Invalid offset + byte size"),
        (("infer", _infer_body("in", 0, 60)), 400, "input byte size mismatch"),
        (("infer", _infer_body("nope", 0, 64)), 404, "Unable to find shared memory region: 'nope'"),
        (("infer", _infer_body("in", 0, 64, out=(0, 32))), 400, "overlap"),
        (("infer", _infer_body("in", 0, 64, out=(0, 96))), 400, "Invalid offset + byte size"),
        (("status", None), 404, "Unable to find system shared memory region"),
    ],
    ids=["unknown key", "path escape", "offset past end", "negative offset", "read past region",
         "size not the tensor's", "unregistered region", "overlapping outputs", "output past region",
         "status of unknown"],
)  # fmt: skip
def test_bad_offsets_sizes_and_regions_are_client_errors(server: LiveServer, regions, case, status, message):
    key, _, _ = regions
    base = server.http_base
    session = requests.Session()
    for name, suffix in (("in", "_in"), ("out", "_out")):
        body = {"key": f"/{key}{suffix}", "offset": 0, "byte_size": 128}
        assert (
            session.post(f"{base}/v2/systemsharedmemory/region/{name}/register", json=body).status_code == 200
        )
    try:
        kind, body = case
        if kind == "register":
            body = {**body, "key": body["key"].replace("KEY", f"/{key}")}
            answer = session.post(f"{base}/v2/systemsharedmemory/region/bad/register", json=body)
        elif kind == "infer":
            answer = session.post(f"{base}/v2/models/simple/infer", json=body)
        else:
            answer = session.get(f"{base}/v2/systemsharedmemory/region/unknown/status")
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]
        # Still serving, the good regions intact.
        good = session.post(f"{base}/v2/models/simple/infer", json=_infer_body("in", 0, 64))
        assert good.status_code == 200, good.text
    finally:
        session.post(f"{base}/v2/systemsharedmemory/unregister")


def test_cuda_shared_memory_is_refused_with_the_reason(server: LiveServer) -> None:
    base = server.http_base
    assert requests.get(f"{base}/v2/cudasharedmemory/status", timeout=10).json() == []
    body = {"raw_handle": {"b64": "AAAA"}, "device_id": 0, "byte_size": 64}
    answer = requests.post(f"{base}/v2/cudasharedmemory/region/c/register", json=body, timeout=10)
    assert answer.status_code == 400 and "CUDA shared memory is not supported" in answer.json()["error"]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="CUDA shared memory is not supported"):
            client.register_cuda_shared_memory("c", b"AAAA", 0, 64)
    finally:
        client.close()


@needs_perf_analyzer
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_with_system_shared_memory(server: LiveServer, protocol: str) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    # More trials than the quick default: on a loaded machine 3 windows may not agree (the last
    # --max-trials given wins).
    extra = ["--shared-memory", "system", "--output-shared-memory-size", "64", "--max-trials", "10"]
    report = run_perf_analyzer("simple", url, protocol=protocol, extra_args=extra)
    assert report.server.counts["Inference count"] > 0, report.output
    # perf_analyzer unregisters what it registered.
    assert requests.get(f"{server.http_base}/v2/systemsharedmemory/status", timeout=10).json() == []
