"""Routes other than infer: health, metadata, config, statistics, repository."""

from __future__ import annotations

import base64

import orjson
import pytest


async def test_health_live_and_ready(call, engine):
    assert (await call("GET", "/v2/health/live")).status == 200
    assert (await call("GET", "/v2/health/ready")).status == 200
    engine.ready = False
    assert (await call("GET", "/v2/health/ready")).status == 400


async def test_server_metadata(call):
    result = await call("GET", "/v2")
    assert result.status == 200
    assert result.json() == {
        "name": "packserve",
        "version": "0.1.0",
        "extensions": ["classification", "binary_tensor_data", "model_repository", "statistics"],
    }


@pytest.mark.parametrize("path", ["/v2/models/simple", "/v2/models/simple/versions/1"])
async def test_model_metadata(call, path):
    result = await call("GET", path)
    assert result.status == 200
    assert result.json() == {
        "name": "simple",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
            {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
        ],
        "outputs": [
            {"name": "OUTPUT0", "datatype": "INT32", "shape": [-1, 16]},
            {"name": "OUTPUT1", "datatype": "INT32", "shape": [-1, 16]},
        ],
    }


async def test_unknown_model_metadata_is_an_error_naming_it(call):
    result = await call("GET", "/v2/models/nope")
    assert result.status == 404
    assert "nope" in result.json()["error"]


async def test_unknown_version_is_an_error(call):
    result = await call("GET", "/v2/models/simple/versions/7")
    assert result.status == 404
    assert "simple" in result.json()["error"]


async def test_model_ready(call):
    assert (await call("GET", "/v2/models/simple/ready")).status == 200
    assert (await call("GET", "/v2/models/simple/versions/1/ready")).status == 200
    assert (await call("GET", "/v2/models/simple/versions/2/ready")).status == 400
    assert (await call("GET", "/v2/models/broken/ready")).status == 400
    assert (await call("GET", "/v2/models/nope/ready")).status == 400


async def test_model_config(call):
    result = await call("GET", "/v2/models/simple/config")
    assert result.status == 200
    assert result.json()["max_batch_size"] == 8


def _simple_rows(rows: int) -> bytes:
    tensor = {"datatype": "INT32", "shape": [rows, 16], "data": [0] * (16 * rows)}
    return orjson.dumps({"inputs": [{"name": "INPUT0", **tensor}, {"name": "INPUT1", **tensor}]})


async def test_statistics_all_and_one(call):
    for rows in (2, 3):  # two executions of 5 rows: every count below differs from its neighbours
        assert (await call("POST", "/v2/models/simple/infer", _simple_rows(rows))).status == 200
    assert (await call("POST", "/v2/models/failing/infer", _simple_rows(1))).status == 500
    expected_model = {
        "name": "simple",
        "version": "1",
        "last_inference": 1700000000000,
        "inference_count": 5,
        "execution_count": 2,
        "inference_stats": {
            "success": {"count": 2, "ns": 2000},
            "fail": {"count": 0, "ns": 0},
            "queue": {"count": 2, "ns": 200},
            "compute_input": {"count": 0, "ns": 0},
            "compute_infer": {"count": 0, "ns": 0},
            "compute_output": {"count": 0, "ns": 0},
            "cache_hit": {"count": 0, "ns": 0},
            "cache_miss": {"count": 0, "ns": 0},
        },
        "response_stats": {},
        "batch_stats": [
            {
                "batch_size": 2,
                "compute_input": {"count": 1, "ns": 5},
                "compute_infer": {"count": 1, "ns": 6},
                "compute_output": {"count": 1, "ns": 7},
            },
            {
                "batch_size": 3,
                "compute_input": {"count": 1, "ns": 5},
                "compute_infer": {"count": 1, "ns": 6},
                "compute_output": {"count": 1, "ns": 7},
            },
        ],
        "memory_usage": [],
    }
    for path in ("/v2/models/simple/stats", "/v2/models/simple/versions/1/stats"):
        result = await call("GET", path)
        assert result.status == 200, path
        assert result.json() == {"model_stats": [expected_model]}
    everything = (await call("GET", "/v2/models/stats")).json()["model_stats"]
    assert [m["name"] for m in everything] == ["simple", "echo", "scores", "failing", "busy"]
    assert everything[0] == expected_model
    assert everything[3]["inference_stats"]["fail"] == {"count": 1, "ns": 10}
    assert (await call("GET", "/v2/models/nope/stats")).status == 400


async def test_repository_index(call):
    result = await call("POST", "/v2/repository/index")
    assert result.status == 200
    assert result.json() == [
        {"name": "broken", "version": "1", "state": "UNAVAILABLE", "reason": "load failed: bad config"},
        {"name": "busy", "version": "1", "state": "READY"},
        {"name": "echo", "version": "1", "state": "READY"},
        {"name": "failing", "version": "1", "state": "READY"},
        {"name": "scores", "version": "1", "state": "READY"},
        {"name": "simple", "version": "1", "state": "READY"},
    ]
    ready = await call("POST", "/v2/repository/index", orjson.dumps({"ready": True}))
    assert [entry["name"] for entry in ready.json()] == ["busy", "echo", "failing", "scores", "simple"]
    bad = await call("POST", "/v2/repository/index", b'{"ready": "yes"}')
    assert bad.status == 400
    assert "ready" in bad.json()["error"]


async def test_load_with_config_and_files(call, engine):
    config = orjson.dumps({"backend": "onnxruntime"}).decode()
    body = orjson.dumps(
        {"parameters": {"config": config, "file:1/model.onnx": base64.b64encode(b"\x01\x02").decode()}}
    )
    result = await call("POST", "/v2/repository/models/echo/load", body)
    assert result.status == 200
    assert result.body == b""
    assert engine.load_calls == [("echo", config, {"1/model.onnx": b"\x01\x02"})]


async def test_load_without_body_and_failure(call, engine):
    assert (await call("POST", "/v2/repository/models/simple/load")).status == 200
    assert engine.load_calls[-1] == ("simple", None, None)
    failed = await call("POST", "/v2/repository/models/broken/load")
    assert failed.status == 400
    assert "bad config" in failed.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"parameters": {"config": {"not": "a string"}}}',
        b'{"parameters": {"file:1/model.onnx": "!!notbase64"}}',
        b'{"parameters": {"config": "{}", "file:1/model.onnx": "!!notbase64"}}',
        b'{"parameters": "nope"}',
        b"[1, 2]",
        b"{not json",
    ],
)
async def test_bad_load_requests(call, body):
    result = await call("POST", "/v2/repository/models/simple/load", body)
    assert result.status == 400
    assert result.json()["error"]


async def test_unload(call, engine):
    body = orjson.dumps({"parameters": {"unload_dependents": True}})
    assert (await call("POST", "/v2/repository/models/simple/unload", body)).status == 200
    assert engine.unload_calls == [("simple", True)]
    assert (await call("GET", "/v2/models/simple/ready")).status == 400
    bad = await call(
        "POST", "/v2/repository/models/simple/unload", b'{"parameters": {"unload_dependents": 1}}'
    )
    assert bad.status == 400


async def test_trace_settings_global_and_per_model(call):
    assert (await call("GET", "/v2/trace/setting")).json() == {"trace_level": ["OFF"], "trace_rate": "1000"}
    updated = await call("POST", "/v2/models/simple/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}')
    assert updated.status == 200 and updated.json()["trace_level"] == ["TIMESTAMPS"]
    assert (await call("GET", "/v2/models/simple/trace/setting")).json()["trace_level"] == ["TIMESTAMPS"]
    assert (await call("GET", "/v2/trace/setting")).json()["trace_level"] == ["OFF"]
    refused = await call("PUT", "/v2/trace/setting")
    assert refused.status == 400 and "PUT" in refused.json()["error"]
    assert (await call("POST", "/v2/trace/setting", b"[1]")).status == 400


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("GET", "/", 404),
        ("GET", "/v1/models", 404),
        ("GET", "/v2/nothing", 404),
        ("GET", "/v2/models/simple/versions", 404),
        ("GET", "/v2/models/simple/bogus", 404),
        ("GET", "/v2/models/simple/versions/1/infer/more", 404),
        ("GET", "/v2/models/simple/infer", 405),
        ("POST", "/v2/models/simple", 405),
        ("POST", "/v2/health/live", 405),
        ("GET", "/v2/repository/index", 405),
        ("GET", "/v2/models", 404),
        ("POST", "/v2/models/stats", 405),
        ("GET", "/v2/models/simple/versions/1/trace/setting", 404),
        ("GET", "/v2/repository/models/simple/load", 405),
        ("POST", "/v2/repository/models/simple/bogus", 404),
        # Under health, shared memory and pipelines the method is checked before the last segment.
        ("GET", "/v2/health/bogus", 404),
        ("POST", "/v2/health/bogus", 405),
        ("POST", "/v2/systemsharedmemory/status", 405),
        ("GET", "/v2/systemsharedmemory/bogus", 405),
        ("POST", "/v2/systemsharedmemory/bogus", 404),
        ("POST", "/v2/systemsharedmemory/register", 404),
        ("POST", "/v2/systemsharedmemory/region//register", 404),
        ("POST", "/v2/cudasharedmemory/region/r/bogus", 404),
        ("GET", "/v2/cudasharedmemory/region/r/register", 405),
        ("GET", "/v2/pipelines/simple", 405),
        ("GET", "/v2/pipelines/simple/x/1", 405),
        ("POST", "/v2/pipelines/simple/x/1", 404),
    ],
)
async def test_unknown_routes_and_methods(call, method, path, status):
    result = await call(method, path)
    assert result.status == status
    assert result.json()["error"]
