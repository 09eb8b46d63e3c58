"""Trace settings through tritonclient (HTTP and gRPC) and header forwarding into a python
model's request parameters, on a live server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import LiveServerFactory, direct_http_session

ECHO_CONFIG = """name: "echo_params"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
ECHO_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("PARAMS", np.array([r.parameters()], dtype=object))]
            )
            for r in requests
        ]
'''


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_simple_repository(tmp_path_factory.mktemp("repo"))
    (root / "echo_params" / "1").mkdir(parents=True)
    (root / "echo_params" / "config.pbtxt").write_text(ECHO_CONFIG)
    (root / "echo_params" / "1" / "model.py").write_text(ECHO_MODEL)
    return root


def _params(result: object) -> dict[str, object]:
    value = result.as_numpy("PARAMS")[0]  # type: ignore[attr-defined]
    return dict(json.loads(value.decode() if isinstance(value, bytes) else value))


def test_trace_settings_and_forwarded_headers(
    live_server_factory: LiveServerFactory, repository: Path, tmp_path: Path
) -> None:
    trace_file = tmp_path / "trace.json"
    server = live_server_factory(
        repository,
        extra_args=[
            "--trace-config", f"triton,file={trace_file}", "--trace-config", "rate=1",
            "--http-header-forward-pattern", "^x-team", "--grpc-header-forward-pattern", "^x-team",
            "--metrics-config", "summary_latencies=true",
        ],
    )  # fmt: skip
    http = httpclient.InferenceServerClient(server.http_url)
    assert http.get_trace_settings()["trace_level"] == ["OFF"]
    updated = http.update_trace_settings(model_name="simple", settings={"trace_level": ["TIMESTAMPS"]})
    assert updated["trace_level"] == ["TIMESTAMPS"] and updated["trace_file"] == str(trace_file)
    assert http.get_trace_settings()["trace_level"] == ["OFF"]  # the global setting is untouched
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        settings = grpc.get_trace_settings(model_name="simple", as_json=True)["settings"]
        assert settings["trace_level"]["value"] == ["TIMESTAMPS"] and settings["trace_rate"]["value"] == ["1"]
        cleared = grpc.update_trace_settings(model_name="simple", settings={"trace_level": None}, as_json=True)
        assert cleared["settings"]["trace_level"]["value"] == ["OFF"]
        with pytest.raises(Exception, match="unknown model"):
            grpc.get_trace_settings(model_name="nosuch")

        values = grpcclient.InferInput("INPUT0", [4], "FP32")
        values.set_data_from_numpy(np.ones(4, np.float32))
        result = grpc.infer("echo_params", [values], headers={"x-team": "vision", "x-other": "no"})
        assert _params(result) == {"x-team": "vision"}
        own = grpc.infer("echo_params", [values], headers={"x-team": "header"}, parameters={"x-team": "body"})
        assert _params(own) == {"x-team": "body"}  # the request's own parameter wins

    tensor = httpclient.InferInput("INPUT0", [4], "FP32")
    tensor.set_data_from_numpy(np.ones(4, np.float32))
    result = http.infer("echo_params", [tensor], headers={"X-Team": "vision", "Authorization": "secret"})
    assert _params(result) == {"x-team": "vision"}
    http.close()
    metrics = direct_http_session().get(server.metrics_url, timeout=10).text
    assert 'nv_inference_request_summary_us{model="echo_params",quantile="0.5",version="1"}' in metrics
    assert 'nv_inference_request_summary_us_count{model="echo_params",version="1"} 3' in metrics
    assert 'nv_inference_request_failure{model="simple",reason="BACKEND",version="1"} 0' in metrics
