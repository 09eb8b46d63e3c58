"""Every malformed request is a 4xx with {"error": ...} naming the problem; the app keeps serving."""

from __future__ import annotations

import gzip
import random
import zlib

import orjson
import pytest

from packserve.frontends.http import HttpLimits
from tests.fakes.http_client import HttpCaller

INFER = "/v2/models/echo/infer"


def _json_input(**overrides):
    entry = {"name": "X", "datatype": "INT32", "shape": [2], "data": [1, 2]}
    entry.update(overrides)
    return orjson.dumps({"inputs": [entry]})


def _binary(header_doc, payload):
    header = orjson.dumps(header_doc)
    return header + payload, {"Inference-Header-Content-Length": str(len(header))}


def _binary_input(size, shape=(2,), datatype="INT32", payload=b"\x00" * 8):
    doc = {
        "inputs": [
            {
                "name": "X",
                "datatype": datatype,
                "shape": list(shape),
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    return _binary(doc, payload)


def _nest(depth):
    value = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


JSON_CASES = {
    "malformed json": (b'{"inputs": [', "parse"),
    "not an object": (b"[1, 2, 3]", "JSON object"),
    "no inputs": (b"{}", "inputs"),
    "inputs not a list": (b'{"inputs": {"X": 1}}', "inputs"),
    "input not an object": (b'{"inputs": [7]}', "JSON object"),
    "input without name": (
        orjson.dumps({"inputs": [{"datatype": "INT32", "shape": [1], "data": [1]}]}),
        "name",
    ),
    "unknown datatype": (_json_input(datatype="INT128"), "INT128"),
    "datatype not a string": (_json_input(datatype=5), "datatype"),
    "shape not a list": (_json_input(shape="2"), "shape"),
    "negative shape": (_json_input(shape=[-2]), "non-negative"),
    "bool shape": (_json_input(shape=[True, 2]), "non-negative"),
    "float shape": (_json_input(shape=[2.0]), "non-negative"),
    "too few elements": (_json_input(shape=[3]), "expects 3 elements"),
    "too many elements": (_json_input(shape=[1]), "expects 1 elements"),
    "ragged data": (_json_input(shape=[3], data=[[1, 2], [3]]), "regular"),
    "int overflow": (_json_input(data=[1, 2**31]), "out of range for INT32"),
    "int underflow": (_json_input(datatype="UINT8", data=[-1, 2]), "out of range for UINT8"),
    "beyond 64 bits": (
        b'{"inputs":[{"name":"X","datatype":"UINT64","shape":[2],"data":[0,36893488147419103232]}]}',
        "UINT64 'data' must hold integers",
    ),
    "mixed sign 64 bits": (_json_input(datatype="UINT64", data=[-1, 2**64 - 1]), "value -1 is out of range"),
    "floats for ints": (_json_input(data=[1.5, 2]), "integers"),
    "strings for ints": (_json_input(data=["1", "2"]), "integers"),
    "bools for ints": (_json_input(data=[True, False]), "integers"),
    "null in data": (_json_input(data=[1, None]), "integers"),
    "numbers for bool": (_json_input(datatype="BOOL", data=[1, 0]), "true/false"),
    "strings for float": (_json_input(datatype="FP32", data=["a", "b"]), "numbers"),
    "fp16 overflow": (_json_input(datatype="FP16", data=[1.0, 1e6]), "out of range for FP16"),
    "fp32 overflow": (_json_input(datatype="FP32", data=[1e39, 1.0]), "out of range for FP32"),
    "numbers for bytes": (_json_input(datatype="BYTES", data=[1, 2]), "strings"),
    "too few bytes elements": (_json_input(datatype="BYTES", shape=[3], data=["a", "b"]), "expects 3"),
    "too many bytes elements": (_json_input(datatype="BYTES", shape=[1], data=[["a"], ["b"]]), "expects 1"),
    "no data": (orjson.dumps({"inputs": [{"name": "X", "datatype": "INT32", "shape": [1]}]}), "neither"),
    "duplicate input": (
        orjson.dumps({"inputs": [orjson.loads(_json_input())["inputs"][0]] * 2}),
        "more than once",
    ),
    "bad id": (orjson.dumps({"id": 5, "inputs": []}), "'id'"),
    "parameters not an object": (orjson.dumps({"parameters": [1], "inputs": []}), "parameters"),
    "nested parameter": (orjson.dumps({"parameters": {"a": {"b": 1}}, "inputs": []}), "'a'"),
    "bad binary_data_output": (
        orjson.dumps({"parameters": {"binary_data_output": "yes"}, "inputs": []}),
        "binary_data_output",
    ),
    "negative priority": (orjson.dumps({"parameters": {"priority": -1}, "inputs": []}), "priority"),
    "string timeout": (orjson.dumps({"parameters": {"timeout": "5"}, "inputs": []}), "timeout"),
    "outputs not a list": (orjson.dumps({"inputs": [], "outputs": "Y"}), "outputs"),
    "output without name": (orjson.dumps({"inputs": [], "outputs": [{}]}), "name"),
    "bad classification": (
        orjson.dumps({"inputs": [], "outputs": [{"name": "Y", "parameters": {"classification": "3"}}]}),
        "classification",
    ),
    "shared memory input without size": (
        _json_input(parameters={"shared_memory_region": "r"}),
        "'shared_memory_byte_size' is required",
    ),
    "deep data": (_json_input(shape=[1], data=_nest(40)), "nested"),
    "deep unknown field": (orjson.dumps({"inputs": [], "extra": _nest(40)}), "nested"),
    "orjson depth limit": (b"[" * 5000 + b"]" * 5000, "parse"),
    "invalid utf-8": (b'{"inputs": [], "id": "\xff"}', "parse"),
}


@pytest.mark.parametrize("body,needle", JSON_CASES.values(), ids=JSON_CASES.keys())
async def test_bad_json_requests(call, body, needle):
    result = await call("POST", INFER, body)
    assert result.status == 400, result.body
    assert needle in result.json()["error"]


async def test_too_many_inputs(engine):
    call = HttpCaller(engine, HttpLimits(max_inputs_per_request=2))
    inputs = [{"name": f"X{i}", "datatype": "INT8", "shape": [1], "data": [1]} for i in range(3)]
    result = await call("POST", INFER, orjson.dumps({"inputs": inputs}))
    assert result.status == 400
    assert "3 inputs" in result.json()["error"]


async def test_huge_shape_is_refused_before_allocation(call):
    result = await call("POST", INFER, _json_input(shape=[2**40, 2**40]))
    assert result.status == 413
    assert "elements" in result.json()["error"]
    body, headers = _binary_input(8, shape=[2**31, 2**31])
    result = await call("POST", INFER, body, headers)
    assert result.status == 413


BINARY_CASES = {
    "size beyond body": (_binary_input(16), "reaches past the end"),
    "size not matching shape": (_binary_input(4, payload=b"\x00" * 4), "Expected 8, got 4"),
    "sizes do not sum up": (_binary_input(8, payload=b"\x00" * 12), "4 bytes of binary data"),
    "negative size": (_binary_input(-8), "non-negative"),
    "string size": (_binary_input("8"), "non-negative"),
    "bool bytes": (_binary_input(2, datatype="BOOL", payload=b"\x01\x07"), "0 or 1"),
    "bytes shape lies": (_binary_input(8, shape=[3], datatype="BYTES"), "cannot hold 3"),
    "bytes element cut": (
        _binary_input(6, shape=[1], datatype="BYTES", payload=b"\x09\x00\x00\x00ab"),
        "claims 9",
    ),
    "bytes leftover": (
        _binary_input(8, shape=[1], datatype="BYTES", payload=b"\x01\x00\x00\x00abcd"),
        "left over",
    ),
    "bytes second cut": (
        _binary_input(6, shape=[2], datatype="BYTES", payload=b"\x00\x00\x00\x00ab"),
        "cannot hold",
    ),
    "data and binary": (
        _binary(
            {
                "inputs": [
                    {
                        "name": "X",
                        "datatype": "INT8",
                        "shape": [1],
                        "data": [1],
                        "parameters": {"binary_data_size": 1},
                    }
                ]
            },
            b"\x01",
        ),
        "both",
    ),
}


@pytest.mark.parametrize("request_,needle", BINARY_CASES.values(), ids=BINARY_CASES.keys())
async def test_bad_binary_requests(call, request_, needle):
    body, headers = request_
    result = await call("POST", INFER, body, headers)
    assert result.status == 400, result.body
    assert needle in result.json()["error"]


@pytest.mark.parametrize("value", ["abc", "-1", "99999"])
async def test_bad_header_length(call, value):
    result = await call("POST", INFER, b'{"inputs": []}', {"Inference-Header-Content-Length": value})
    assert result.status == 400
    assert "Inference-Header-Content-Length" in result.json()["error"]


async def test_binary_size_without_header_length_is_refused(call):
    body = orjson.dumps(
        {"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "parameters": {"binary_data_size": 1}}]}
    )
    result = await call("POST", INFER, body + b"\x01")
    assert result.status == 400


async def test_unknown_model_and_version(call):
    body = orjson.dumps({"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}]})
    result = await call("POST", "/v2/models/ghost/infer", body)
    assert result.status == 404
    assert "ghost" in result.json()["error"]
    result = await call("POST", "/v2/models/echo/versions/9/infer", body)
    assert result.status == 404
    assert "echo" in result.json()["error"]


async def test_model_not_ready(call):
    body = orjson.dumps({"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}]})
    result = await call("POST", "/v2/models/broken/infer", body)
    assert result.status == 404
    assert "broken" in result.json()["error"]


async def test_fuzzed_bodies_never_crash(call):
    """Random mutations of valid bodies: always a JSON answer, never a 500."""
    rng = random.Random(1234)
    seeds = [
        _json_input(),
        _json_input(datatype="BYTES", data=["a", "b"]),
        _json_input(datatype="FP16", data=[1.0, 2.5]),
        _binary_input(8)[0],
    ]
    alphabet = b'{}[]",:0123456789-.eE truefalsnul\\\x00\xff'
    for _ in range(400):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            pos = rng.randrange(len(body) + 1)
            if op < 0.4 and body:
                body[min(pos, len(body) - 1)] = rng.choice(alphabet)
            elif op < 0.7:
                body[pos:pos] = bytes([rng.choice(alphabet)])
            elif body:
                del body[min(pos, len(body) - 1)]
        headers = (
            {"Inference-Header-Content-Length": str(rng.randrange(len(body) + 2))}
            if rng.random() < 0.3
            else {}
        )
        result = await call("POST", INFER, bytes(body), headers)
        assert result.status in (200, 400, 413), (bytes(body), result.body)
        if result.status != 200:
            assert isinstance(result.json()["error"], str)
    # Still serving afterwards.
    assert (await call("POST", INFER, _json_input())).status == 200


# ------------------------------------------------------------------------------ body limits, gzip


async def test_body_over_declared_limit_is_413_without_reading(engine):
    call = HttpCaller(engine, HttpLimits(max_body_bytes=100))
    result = await call("POST", INFER, b"", {"Content-Length": "101"})
    assert result.status == 413
    result = await call("POST", INFER, b"", {"Content-Length": "twelve"})
    assert result.status == 400


async def test_streamed_body_counted_against_limit(engine):
    call = HttpCaller(engine, HttpLimits(max_body_bytes=100))
    result = await call("POST", INFER, b" " * 150, chunk_size=40)
    assert result.status == 413
    assert "100" in result.json()["error"]
    ok = _json_input()
    assert (await call("POST", INFER, ok, chunk_size=7)).status == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_request(call, encoding):
    raw = _json_input()
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    result = await call("POST", INFER, body, {"Content-Encoding": encoding})
    assert result.status == 200, result.body
    assert result.json()["outputs"][0]["data"] == [1, 2]


async def test_compressed_binary_request(call):
    body, headers = _binary_input(8, payload=b"\x01\x00\x00\x00\x02\x00\x00\x00")
    headers["Content-Encoding"] = "gzip"
    result = await call("POST", INFER, gzip.compress(body), headers)
    assert result.status == 200, result.body
    assert result.json()["outputs"][0]["data"] == [1, 2]


@pytest.mark.parametrize(
    "body,encoding,needle",
    [
        (b"not gzip at all", "gzip", "not valid gzip"),
        (gzip.compress(b'{"inputs": []}')[:-6], "gzip", "truncated"),
        (gzip.compress(b'{"inputs": []}') + b"junk", "gzip", "after the end"),
        (b"x", "br", "unsupported Content-Encoding"),
    ],
)
async def test_bad_compressed_bodies(call, body, encoding, needle):
    result = await call("POST", INFER, body, {"Content-Encoding": encoding})
    assert result.status == 400
    assert needle in result.json()["error"]


async def test_decompression_bomb_stops_at_inflate_limit(engine):
    call = HttpCaller(engine, HttpLimits(max_inflated_bytes=1024 * 1024))
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))  # ~50 KiB on the wire
    result = await call("POST", INFER, bomb, {"Content-Encoding": "gzip"})
    assert result.status == 413
    assert "inflates past" in result.json()["error"]
