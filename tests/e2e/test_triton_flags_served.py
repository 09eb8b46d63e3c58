"""tritonserver's flags on a live `packserve serve`: several repositories, --model-config-name,
--id, --log-file/--log-format json/--log-verbose=2 with failed requests logged, --allow-metrics=false,
--exit-on-error."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import HOST, LiveServerFactory, direct_http_session, free_ports

RAISING_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        raise ZeroDivisionError("raised inside model.py")
'''
RAISING_CONFIG = """name: "python_raise"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def _second_repository(first: Path, root: Path) -> Path:
    """`simple_h100` (its configs/h100.pbtxt allows batches of 2, config.pbtxt of 8), a model that
    raises, and a second `python_add`, which the first repository holds too."""
    shutil.copytree(first / "simple", root / "simple_h100")
    config = (root / "simple_h100" / "config.pbtxt").read_text().replace('"simple"', '"simple_h100"')
    (root / "simple_h100" / "config.pbtxt").write_text(config)
    (root / "simple_h100" / "configs").mkdir()
    (root / "simple_h100" / "configs" / "h100.pbtxt").write_text(
        config.replace("max_batch_size: 8", "max_batch_size: 2")
    )
    shutil.copytree(first / "python_add", root / "python_add")
    (root / "python_raise" / "1").mkdir(parents=True)
    (root / "python_raise" / "config.pbtxt").write_text(RAISING_CONFIG)
    (root / "python_raise" / "1" / "model.py").write_text(RAISING_MODEL)
    return root


@pytest.fixture(scope="module")
def repositories(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first = build_simple_repository(tmp_path_factory.mktemp("repo-a"))
    return first, _second_repository(first, tmp_path_factory.mktemp("repo-b"))


def _json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_flags_on_a_live_server(
    live_server_factory: LiveServerFactory, repositories: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = repositories
    log_file = tmp_path / "server.log"
    server = live_server_factory(
        first,
        extra_args=[
            "--model-repository", str(second), "--id", "triton-twin", "--model-config-name", "h100",
            "--log-file", str(log_file), "--log-format", "json", "--log-verbose", "2",
            "--allow-metrics", "false",
        ],
    )  # fmt: skip
    http = direct_http_session()
    assert http.get(f"{server.http_base}/v2").json()["name"] == "triton-twin"
    index = {e["name"]: e for e in http.post(f"{server.http_base}/v2/repository/index").json()}
    assert index["simple"]["state"] == "READY" and index["simple_h100"]["state"] == "READY"
    assert index["python_add"]["state"] == "UNAVAILABLE"
    assert "more than one model repository" in index["python_add"]["reason"]
    config = http.get(f"{server.http_base}/v2/models/simple_h100/config").json()
    assert config["max_batch_size"] == 2  # configs/h100.pbtxt, not config.pbtxt
    with pytest.raises(OSError), socket.create_connection((HOST, server.metrics_port), timeout=2):
        pass  # --allow-metrics=false: nothing listens there

    bad = http.post(f"{server.http_base}/v2/models/simple/infer", json={"inputs": []})
    assert bad.status_code == 400
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
    assert http.post(f"{server.http_base}/v2/models/python_raise/infer", json=body).status_code == 500
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("INPUT0", [1, 3], "INT32")
        tensor.set_data_from_numpy(np.zeros((1, 3), np.int32))
        with pytest.raises(Exception, match="INPUT0"):
            client.infer("simple", [tensor])
        good = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        for tensor in good:
            tensor.set_data_from_numpy(np.ones((1, 16), np.int32))
        for _ in range(2):  # the second is decoded from the first one's kept wire plan
            client.infer("simple", good)

    lines = _json_lines(log_file)
    failed = [line for line in lines if "failed with" in str(line["message"])]
    client_errors = [line for line in failed if line["level"] == "INFO"]
    assert any("POST /v2/models/simple/infer failed with 400" in str(line["message"]) for line in client_errors)
    assert any(str(line["message"]).startswith("gRPC ModelInfer simple failed with 400") for line in client_errors)
    model_errors = [line for line in failed if line["level"] == "ERROR"]
    assert len(model_errors) == 1 and "python_raise" in str(model_errors[0]["message"])
    assert "ZeroDivisionError: raised inside model.py" in str(model_errors[0]["exception"])
    detail = [line for line in lines if line["level"] == "DEBUG" and "-> 200" in str(line["message"])]
    # Level 2 adds each request's detail: headers over HTTP, the input tensors over gRPC.
    assert any("POST /v2/models/python_raise" in str(line["message"]) for line in lines if line["level"] == "DEBUG")
    assert sum("INPUT0:INT32[1, 16] INPUT1:INT32[1, 16]" in str(line["message"]) for line in detail) == 2


def test_exit_on_error_stops_a_server_whose_model_fails(repositories: tuple[Path, Path]) -> None:
    first, second = repositories
    http_port, grpc_port, metrics_port = free_ports(3)
    command = [
        sys.executable, "-m", "packserve", "serve", "--model-repository", str(first),
        "--model-repository", str(second), "--exit-on-error=true",
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "failed to load all models (python_add)" in result.stderr
    assert "Traceback" not in result.stderr
