"""Bad requests against a live server: each gets a 4xx whose message names the problem, and the
server keeps serving. Raw HTTP (`requests`) where tritonclient cannot express the bad request."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.e2e_server import LiveServer, LiveServerFactory, direct_http_session
from tests.e2e.e2e_simple import json_simple_request, simple_inputs, simple_operands

HTTP = direct_http_session()
MAX_BODY_MIB = 1


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, example_repository: Path) -> LiveServer:
    return live_server_factory(example_repository, extra_args=["--max-body-mib", str(MAX_BODY_MIB)])


def raw_infer(server: LiveServer, model: str, document: dict[str, Any]) -> requests.Response:
    return HTTP.post(f"{server.http_base}/v2/models/{model}/infer", json=document, timeout=30)


# ---- errors -------------------------------------------------------------------------------------


def test_unknown_model(server: LiveServer, client: httpclient.InferenceServerClient) -> None:
    reply = raw_infer(server, "no_such_model", json_simple_request([1, 16]))
    assert reply.status_code == 404
    assert "no_such_model" in reply.json()["error"]
    with pytest.raises(InferenceServerException, match="no_such_model"):
        client.get_model_metadata("no_such_model")


def test_wrong_shape(server: LiveServer, client: httpclient.InferenceServerClient) -> None:
    reply = raw_infer(server, "simple", json_simple_request([1, 8]))
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert "INPUT0" in message and "[1,8]" in message.replace(" ", "") and "16" in message
    a, b = simple_operands(1)
    with pytest.raises(InferenceServerException, match="INPUT0"):
        client.infer("simple", simple_inputs(a[:, :8].copy(), b[:, :8].copy()))


def test_wrong_datatype(server: LiveServer) -> None:
    reply = raw_infer(server, "simple", json_simple_request([1, 16], datatype="FP32"))
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert "INT32" in message and "FP32" in message and "INPUT0" in message


def test_missing_input(server: LiveServer) -> None:
    reply = raw_infer(server, "simple", json_simple_request([1, 16], names=("INPUT1",)))
    assert reply.status_code == 400
    assert "INPUT0" in reply.json()["error"]


def test_batch_above_max_batch_size(server: LiveServer, client: httpclient.InferenceServerClient) -> None:
    reply = raw_infer(server, "simple", json_simple_request([9, 16]))
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert "9" in message and "8" in message and "batch" in message.lower()
    a, b = simple_operands(9)
    with pytest.raises(InferenceServerException, match="batch"):
        client.infer("simple", simple_inputs(a, b))


SIXTEEN = list(range(16))


@pytest.mark.parametrize(
    ("document", "expected_words"),
    [
        (
            {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [1, 2]}]},
            ("INPUT0", "16", "2"),
        ),
        (
            {
                "inputs": json_simple_request([1, 16])["inputs"],
                "outputs": [{"name": "NO_SUCH_OUTPUT"}],
            },
            ("NO_SUCH_OUTPUT", "OUTPUT0"),
        ),
        (
            {
                "inputs": [
                    *json_simple_request([1, 16])["inputs"],
                    {"name": "EXTRA", "datatype": "INT32", "shape": [1], "data": [1]},
                ]
            },
            ("EXTRA",),
        ),
        (
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "datatype": "INT32",
                        "shape": [1, 16],
                        "data": [*SIXTEEN[:15], 9_999_999_999],
                    },
                    json_simple_request([1, 16])["inputs"][1],
                ]
            },
            ("INPUT0", "INT32"),
        ),
        ({"inputs": "not a list"}, ("inputs",)),
    ],
    ids=["element-count", "unknown-output", "unknown-input", "value-out-of-range", "inputs-not-a-list"],
)
def test_malformed_json_requests(
    server: LiveServer, document: dict[str, Any], expected_words: tuple[str, ...]
) -> None:
    reply = raw_infer(server, "simple", document)
    assert reply.status_code == 400, reply.text
    message = reply.json()["error"]
    for word in expected_words:
        assert word in message, f"{message!r} does not mention {word!r}"


def test_unparsable_json_body(server: LiveServer) -> None:
    reply = HTTP.post(f"{server.http_base}/v2/models/simple/infer", data=b'{"inputs": [', timeout=10)
    assert reply.status_code == 400
    assert "JSON" in reply.json()["error"]


def test_python_error_fails_only_its_request(client: httpclient.InferenceServerClient) -> None:
    rows = [np.full((1, 4), value, dtype=np.float32) for value in (1.0, -1.0, 2.0, 3.0)]
    pending = []
    for row in rows:
        tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(row)
        pending.append(client.async_infer("python_add", [tensor]))
    for row, request in zip(rows, pending, strict=True):
        if row[0, 0] < 0:
            with pytest.raises(InferenceServerException, match="negative"):
                request.get_result()
        else:
            np.testing.assert_array_equal(request.get_result().as_numpy("OUTPUT0"), row * 2)


# ---- malformed bodies ---------------------------------------------------------------------------


def _assert_still_serving(client: httpclient.InferenceServerClient) -> None:
    a, b = simple_operands(1)
    np.testing.assert_array_equal(client.infer("simple", simple_inputs(a, b)).as_numpy("OUTPUT0"), a + b)


def test_oversized_body_is_413(server: LiveServer, client: httpclient.InferenceServerClient) -> None:
    too_big = b"x" * ((MAX_BODY_MIB << 20) + 1024)
    reply = HTTP.post(f"{server.http_base}/v2/models/simple/infer", data=too_big, timeout=30)
    assert reply.status_code == 413
    assert "limit" in reply.json()["error"]
    # Chunked (no Content-Length): refused while it streams in.
    chunks = iter([too_big[: 1 << 19]] * 4)
    reply = HTTP.post(f"{server.http_base}/v2/models/simple/infer", data=chunks, timeout=30)
    assert reply.status_code == 413
    assert "limit" in reply.json()["error"]
    _assert_still_serving(client)


def test_bad_gzip_is_400(server: LiveServer, client: httpclient.InferenceServerClient) -> None:
    body = json.dumps(json_simple_request([1, 16])).encode()
    reply = HTTP.post(
        f"{server.http_base}/v2/models/simple/infer",
        data=b"this is not gzip" + body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 400
    assert "gzip" in reply.json()["error"]
    # A good gzip body on the same server still works.
    reply = HTTP.post(
        f"{server.http_base}/v2/models/simple/infer",
        data=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [2 * i for i in range(16)]
    _assert_still_serving(client)
