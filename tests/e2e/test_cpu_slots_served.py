"""`--cpu-execution-slots` end to end: two CPU models with two instances each, served by
`packserve serve` under a one-slot budget while clients load both at once. Both models make
progress (no starvation) and no two executions ever overlap (the budget holds across models)."""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from tests.e2e.e2e_server import LiveServerFactory

# Burns ~4 ms of CPU per batch. A marker file in MARKER_DIR exists while an execution runs: if it
# is already there, another execution (of either model) overlaps this one, and OVERLAP says so.
MODEL_PY = """
import os, time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(os.environ["PACKSERVE_TEST_MARKER_DIR"], "running")

    def execute(self, requests):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL)
            os.close(fd)
            overlap = 0
        except FileExistsError:
            overlap = 1
        end = time.thread_time() + 0.004
        while time.thread_time() < end:
            pass
        if not overlap:
            os.remove(self.marker)
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            out = np.full(x.shape, overlap, dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OVERLAP", out)]))
        return responses
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "X", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OVERLAP", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 2, kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 1000 }}
"""

MODELS = ("burn_a", "burn_b")
REQUESTS_PER_CLIENT = 12


def write_repository(root: Path) -> Path:
    for name in MODELS:
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG.format(name=name))
        (root / name / "1" / "model.py").write_text(MODEL_PY)
    return root


def test_two_models_share_one_slot_and_both_progress(
    live_server_factory: LiveServerFactory, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    os.environ["PACKSERVE_TEST_MARKER_DIR"] = str(markers)  # inherited by the server
    try:
        server = live_server_factory(
            write_repository(tmp_path / "repo"), extra_args=["--cpu-execution-slots", "1"]
        )
    finally:
        del os.environ["PACKSERVE_TEST_MARKER_DIR"]
    answers: dict[str, list[int]] = {name: [] for name in MODELS}
    errors: list[BaseException] = []

    def client_loop(model: str) -> None:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
        try:
            for _ in range(REQUESTS_PER_CLIENT):
                tensor = httpclient.InferInput("X", [1, 1], "FP32")
                tensor.set_data_from_numpy(np.ones((1, 1), dtype=np.float32))
                result = client.infer(model, [tensor])
                answers[model].append(int(result.as_numpy("OVERLAP")[0, 0]))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(model,)) for model in MODELS for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    for name in MODELS:
        assert len(answers[name]) == 3 * REQUESTS_PER_CLIENT
        assert set(answers[name]) == {0}, f"{name}: executions overlapped under a one-slot budget"
        with urllib.request.urlopen(f"{server.http_base}/v2/models/{name}/stats", timeout=30) as response:
            stats = json.load(response)["model_stats"][0]
        assert stats["inference_count"] == 3 * REQUESTS_PER_CLIENT
        assert stats["execution_count"] >= 1
