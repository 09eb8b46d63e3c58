"""The server's life: SIGTERM drains requests in flight and exits 0; poll mode picks up a model
folder added to (and removed from) the repository."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import (
    LiveServer,
    LiveServerFactory,
    ServerStartError,
    direct_http_session,
    start_live_server,
)

HTTP = direct_http_session()
IN_FLIGHT = 6
EXECUTE_SECONDS = 0.5

SLOW_ECHO_CONFIG = """\
name: "slow_echo"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# Each execution takes EXECUTE_SECONDS, so requests are still queued or running when SIGTERM lands.
SLOW_ECHO_MODEL = f"""\
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep({EXECUTE_SECONDS})
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", values)]))
        return responses
"""


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def pending_requests(server: LiveServer, model: str) -> float:
    """nv_inference_pending_request_count: requests the engine holds (queued or executing)."""
    text = HTTP.get(server.metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nv_inference_pending_request_count" and sample.labels.get("model") == model:
                return float(sample.value)
    return 0.0


def echo_once(url: str, value: float) -> np.ndarray:
    client = httpclient.InferenceServerClient(url, network_timeout=60)
    try:
        tensor = httpclient.InferInput("INPUT0", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[value]], dtype=np.float32))
        result: np.ndarray = client.infer("slow_echo", [tensor]).as_numpy("OUTPUT0")
        return result
    finally:
        client.close()


def test_sigterm_finishes_requests_in_flight_and_exits_0(
    live_server_factory: LiveServerFactory, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    (repository / "slow_echo" / "1").mkdir(parents=True)
    (repository / "slow_echo" / "config.pbtxt").write_text(SLOW_ECHO_CONFIG)
    (repository / "slow_echo" / "1" / "model.py").write_text(SLOW_ECHO_MODEL)
    server = live_server_factory(repository)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures: list[Future[np.ndarray]] = [
            pool.submit(echo_once, server.http_url, float(i)) for i in range(IN_FLIGHT)
        ]
        # Every request is inside the engine (max_batch_size 4: one batch running, the rest queued).
        wait_for(lambda: pending_requests(server, "slow_echo") == IN_FLIGHT, 30, "all requests in flight")
        code = server.terminate()
        results = [future.result(timeout=60) for future in futures]

    assert code == 0, server.log()[-4000:]
    for i, result in enumerate(results):
        assert result.tolist() == [[float(i)]]
    log = server.log()
    assert "finishing requests in flight" in log and "stopped" in log
    with pytest.raises(requests.ConnectionError):
        HTTP.get(f"{server.http_base}/v2/health/live", timeout=5)


def test_poll_mode_loads_added_and_unloads_removed_models(
    live_server_factory: LiveServerFactory, tmp_path: Path
) -> None:
    staging = build_simple_repository(tmp_path / "staging")
    repository = tmp_path / "repository"
    repository.mkdir()
    shutil.copytree(staging / "simple", repository / "simple")
    server = live_server_factory(repository, control_mode="poll", extra_args=["--repository-poll-secs", "1"])
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        assert [entry["name"] for entry in client.get_model_repository_index()] == ["simple"]
        assert not client.is_model_ready("simple_v3")

        # Copied under a hidden name (skipped by the scan), then renamed: the poll never sees half a model.
        shutil.copytree(staging / "simple_v3", repository / ".simple_v3.partial")
        (repository / ".simple_v3.partial").rename(repository / "simple_v3")
        wait_for(lambda: client.is_model_ready("simple_v3"), 20, "simple_v3 to load after a poll")
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a)
        result = client.infer("simple_v3", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)
        assert result.get_response()["model_version"] == "3"

        shutil.rmtree(repository / "simple_v3")
        wait_for(lambda: not client.is_model_ready("simple_v3"), 20, "simple_v3 to unload after a poll")
        assert client.is_model_ready("simple")
    finally:
        client.close()


def test_bad_repository_path_fails_fast_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repository"
    with pytest.raises(ServerStartError) as raised:
        start_live_server(missing, tmp_path, ready_timeout_s=30)
    assert raised.value.exit_code == 2
    # The CLI draws the message in a box wrapped to the terminal width: compare the words only.
    words = " ".join(re.sub("[\u2500-\u257f]", " ", raised.value.log).split())
    assert "Invalid value for --model-repository" in words
    assert "is not a directory" in words
