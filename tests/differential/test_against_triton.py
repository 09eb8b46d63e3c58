"""Identical requests to the real Triton 2.51 and to packserve: the answers packserve claims to
match must match. Differences we accept on purpose are listed in ACCEPTED_STATUS_DIFFERENCES."""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

pytestmark = pytest.mark.triton

GOOD0 = {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))}
GOOD1 = {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [2] * 16}


def _infer_body(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _binary_header(size: int) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "INT32",
                    "shape": [1, 16],
                    "parameters": {"binary_data_size": size},
                },
                GOOD1,
            ]
        }
    ).encode()
    return header, {"Inference-Header-Content-Length": str(len(header))}


_bin_header, _bin_headers = _binary_header(64)

# (id, method, path, body, headers): every one answered with the same status by both servers.
SAME_STATUS = [
    ("live", "GET", "/v2/health/live", b"", {}),
    ("ready", "GET", "/v2/health/ready", b"", {}),
    ("model ready", "GET", "/v2/models/simple/ready", b"", {}),
    ("unknown model ready", "GET", "/v2/models/nope/ready", b"", {}),
    ("unknown version ready", "GET", "/v2/models/simple/versions/9/ready", b"", {}),
    ("unknown model metadata", "GET", "/v2/models/nope", b"", {}),
    ("unknown version metadata", "GET", "/v2/models/simple/versions/9", b"", {}),
    ("unknown model config", "GET", "/v2/models/nope/config", b"", {}),
    ("unknown model stats", "GET", "/v2/models/nope/stats", b"", {}),
    ("unknown route", "GET", "/v2/bogus", b"", {}),
    ("wrong method", "GET", "/v2/models/simple/infer", b"", {}),
    ("infer ok", "POST", "/v2/models/simple/infer", _infer_body([GOOD0, GOOD1]), {}),
    ("infer unknown model", "POST", "/v2/models/nope/infer", _infer_body([GOOD0, GOOD1]), {}),
    ("infer unknown version", "POST", "/v2/models/simple/versions/9/infer", _infer_body([GOOD0, GOOD1]), {}),
    (
        "unknown datatype",
        "POST",
        "/v2/models/simple/infer",
        _infer_body([dict(GOOD0, datatype="X"), GOOD1]),
        {},
    ),
    (
        "wrong datatype",
        "POST",
        "/v2/models/simple/infer",
        _infer_body([dict(GOOD0, datatype="FP32", data=[1.0] * 16), GOOD1]),
        {},
    ),
    ("missing input", "POST", "/v2/models/simple/infer", _infer_body([GOOD0]), {}),
    (
        "extra input",
        "POST",
        "/v2/models/simple/infer",
        _infer_body([GOOD0, GOOD1, dict(GOOD0, name="X")]),
        {},
    ),
    (
        "wrong shape",
        "POST",
        "/v2/models/simple/infer",
        _infer_body([dict(GOOD0, shape=[2, 8]), dict(GOOD1, shape=[2, 8])]),
        {},
    ),
    (
        "batch too large",
        "POST",
        "/v2/models/simple/infer",
        _infer_body([dict(GOOD0, shape=[9, 16], data=[0] * 144), dict(GOOD1, shape=[9, 16], data=[0] * 144)]),
        {},
    ),
    (
        "unknown output",
        "POST",
        "/v2/models/simple/infer",
        _infer_body([GOOD0, GOOD1], outputs=[{"name": "NOPE"}]),
        {},
    ),
    ("binary ok", "POST", "/v2/models/simple/infer", _bin_header + b"\x00" * 64, _bin_headers),
    ("binary size beyond body", "POST", "/v2/models/simple/infer", _bin_header + b"\x00" * 10, _bin_headers),
    (
        "header length beyond body",
        "POST",
        "/v2/models/simple/infer",
        _bin_header + b"\x00" * 64,
        {"Inference-Header-Content-Length": "100000"},
    ),
    (
        "gzip ok",
        "POST",
        "/v2/models/simple/infer",
        gzip.compress(_infer_body([GOOD0, GOOD1])),
        {"Content-Encoding": "gzip"},
    ),
    (
        "python model error",
        "POST",
        "/v2/models/python_add/infer",
        _infer_body([{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [-1.0, 0, 0, 0]}]),
        {},
    ),
    ("index", "POST", "/v2/repository/index", b"", {}),
    ("unload unknown", "POST", "/v2/repository/models/nope/unload", b"", {}),
]

# Cases where packserve answers on purpose differently from Triton 2.51: (Triton, packserve).
ACCEPTED_STATUS_DIFFERENCES = {
    # Triton answers a JSON syntax error, a data/shape mismatch and a negative dimension with 500
    # (its parser's errors are INTERNAL); they are client errors, so packserve says 400.
    "malformed json": ("POST", "/v2/models/simple/infer", b"{bad", {}, 500, 400),
    "data shape mismatch": (
        "POST",
        "/v2/models/simple/infer",
        _infer_body([dict(GOOD0, shape=[1, 15]), GOOD1]),
        {},
        500,
        400,
    ),
    "negative shape": (
        "POST",
        "/v2/models/simple/infer",
        _infer_body([dict(GOOD0, shape=[-1, 16]), GOOD1]),
        {},
        500,
        400,
    ),
    # Triton silently wraps an out-of-range JSON integer; packserve refuses it.
    "int overflow": (
        "POST",
        "/v2/models/simple/infer",
        _infer_body([dict(GOOD0, data=[2**40] * 16), GOOD1]),
        {},
        200,
        400,
    ),
}


def _status(server: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.request(method, server.base + path, data=body, headers=headers, timeout=30)


@pytest.mark.parametrize("case", SAME_STATUS, ids=[c[0] for c in SAME_STATUS])
def test_same_status_and_error_shape(servers, case):
    _, method, path, body, headers = case
    triton, packserve = (_status(s, method, path, body, headers) for s in servers)
    assert packserve.status_code == triton.status_code, (triton.text, packserve.text)
    if triton.status_code >= 400 and triton.content:
        assert set(packserve.json()) == set(triton.json()) == {"error"}


@pytest.mark.parametrize("name", ACCEPTED_STATUS_DIFFERENCES)
def test_accepted_differences_still_hold(servers, name):
    """If Triton or packserve changes here, revisit the accepted-differences list."""
    method, path, body, headers, triton_status, packserve_status = ACCEPTED_STATUS_DIFFERENCES[name]
    triton, packserve = (_status(s, method, path, body, headers) for s in servers)
    assert (triton.status_code, packserve.status_code) == (triton_status, packserve_status)


def test_server_metadata(servers):
    triton, packserve = (requests.get(s.base + "/v2", timeout=10).json() for s in servers)
    # Accepted: the name ("packserve" vs "triton") and the version string differ; clients and
    # perf_analyzer read only the extension list.
    assert set(packserve) == set(triton) == {"name", "version", "extensions"}
    # packserve lists only the extensions it implements; each must be one Triton also names.
    assert set(packserve["extensions"]) <= set(triton["extensions"])


@pytest.mark.parametrize(
    "path", ["/v2/models/simple", "/v2/models/simple/versions/1", "/v2/models/python_add"]
)
def test_model_metadata_identical(servers, path):
    triton, packserve = (requests.get(s.base + path, timeout=10).json() for s in servers)
    assert packserve == triton


def test_model_config_core_fields(servers):
    triton, packserve = (
        requests.get(s.base + "/v2/models/simple/config", timeout=10).json() for s in servers
    )
    for key in ("name", "backend", "max_batch_size"):
        assert packserve[key] == triton[key], key
    for kind in ("input", "output"):
        assert [(t["name"], t["data_type"], t["dims"]) for t in packserve[kind]] == [
            (t["name"], t["data_type"], t["dims"]) for t in triton[kind]
        ]


def _keys(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: _keys(v) for k, v in document.items()}
    if isinstance(document, list):
        return [_keys(document[0])] if document else []
    return type(document).__name__


@pytest.mark.parametrize("binary", [True, False])
def test_infer_results_identical(servers, binary):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 5, dtype=np.int32)
    results = []
    for server in servers:
        client = httpclient.InferenceServerClient(server.url)
        try:
            inputs = [httpclient.InferInput(n, [2, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            inputs[0].set_data_from_numpy(a, binary_data=binary)
            inputs[1].set_data_from_numpy(b, binary_data=binary)
            outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT1", "OUTPUT0")]
            result = client.infer("simple", inputs, outputs=outputs, request_id="diff-1")
            results.append((result.get_response(), result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")))
        finally:
            client.close()
    (t_resp, t0, t1), (p_resp, p0, p1) = results
    np.testing.assert_array_equal(p0, t0)
    np.testing.assert_array_equal(p1, t1)
    # Accepted: packserve returns outputs in the order asked for, Triton in the order the model
    # produced them; clients look outputs up by name.
    for response in (p_resp, t_resp):
        response["outputs"].sort(key=lambda output: output["name"])
    assert p_resp == t_resp  # id, model name and version, shapes, datatypes, binary_data_size, data


def test_statistics_have_triton_shape(servers):
    triton, packserve = (requests.get(s.base + "/v2/models/simple/stats", timeout=10).json() for s in servers)
    assert _keys(packserve) == _keys(triton)
    assert packserve["model_stats"][0]["inference_count"] > 0


def test_ready_index_identical(servers):
    triton, packserve = (
        requests.post(s.base + "/v2/repository/index", data=b'{"ready": true}', timeout=10).json()
        for s in servers
    )
    assert sorted(packserve, key=lambda e: e["name"]) == sorted(triton, key=lambda e: e["name"])
