"""A repository where most models are broken: the server still starts, serves the good models, and
its repository index says why each broken one is UNAVAILABLE."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from packserve.examples.simple_repository import SIMPLE_CONFIG, build_simple_repository
from tests.e2e.e2e_server import LiveServer, LiveServerFactory, direct_http_session

HTTP = direct_http_session()


# simple's config with only the model name changed.
def _simple_config(name: str) -> str:
    return SIMPLE_CONFIG.replace('name: "simple"', f'name: "{name}"')


def _simple_ensemble_config(name: str, steps: str, outputs: str = "OUTPUT0, OUTPUT1") -> str:
    output_block = ",\n".join(
        f'  {{ name: "{o.strip()}" data_type: TYPE_INT32 dims: [ 16 ] }}' for o in outputs.split(",")
    )
    return f"""\
name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [
  {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }},
  {{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
]
output [
{output_block}
]
ensemble_scheduling {{ step [ {steps} ] }}
"""


def _step(model: str, inputs: tuple[str, str], outputs: tuple[str, str]) -> str:
    return (
        f'{{ model_name: "{model}" model_version: -1 '
        f'input_map {{ key: "INPUT0" value: "{inputs[0]}" }} '
        f'input_map {{ key: "INPUT1" value: "{inputs[1]}" }} '
        f'output_map {{ key: "OUTPUT0" value: "{outputs[0]}" }} '
        f'output_map {{ key: "OUTPUT1" value: "{outputs[1]}" }} }}'
    )


# Step 0 reads "y", which only step 1 writes; step 1 reads "x", which only step 0 writes.
CYCLE_STEPS = (
    _step("simple", ("INPUT0", "y"), ("x", "OUTPUT0"))
    + ", "
    + _step("simple", ("x", "INPUT1"), ("y", "OUTPUT1"))
)
UNKNOWN_STEP = _step("no_such_step_model", ("INPUT0", "INPUT1"), ("OUTPUT0", "OUTPUT1"))


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)


def build_broken_repository(root: Path) -> Path:
    """`simple` and `simple_ensemble` (good) beside one model per way of being broken."""
    staging = build_simple_repository(root / "staging")
    repo = root / "repository"
    for good in ("simple", "simple_ensemble"):
        shutil.copytree(staging / good, repo / good)
    graph = (staging / "simple" / "1" / "model.onnx").read_bytes()

    _write(repo / "bad_config" / "config.pbtxt", 'name: "bad_config"\nmax_batch_size: 8\ninput [ { name: ')
    _write(repo / "bad_config" / "1" / "model.onnx", graph)

    _write(repo / "missing_file" / "config.pbtxt", _simple_config("missing_file"))
    (repo / "missing_file" / "1").mkdir(parents=True)

    _write(
        repo / "wrong_input_name" / "config.pbtxt",
        _simple_config("wrong_input_name").replace('name: "INPUT1"', 'name: "IMAGE"'),
    )
    _write(repo / "wrong_input_name" / "1" / "model.onnx", graph)

    wrong_type = _simple_config("wrong_input_type").replace(
        '{ name: "INPUT0" data_type: TYPE_INT32', '{ name: "INPUT0" data_type: TYPE_FP32'
    )
    _write(repo / "wrong_input_type" / "config.pbtxt", wrong_type)
    _write(repo / "wrong_input_type" / "1" / "model.onnx", graph)

    _write(repo / "cycle_ensemble" / "config.pbtxt", _simple_ensemble_config("cycle_ensemble", CYCLE_STEPS))
    (repo / "cycle_ensemble" / "1").mkdir(parents=True)

    _write(repo / "unknown_step" / "config.pbtxt", _simple_ensemble_config("unknown_step", UNKNOWN_STEP))
    (repo / "unknown_step" / "1").mkdir(parents=True)

    # Two ensembles that call each other: neither can ever load.
    for name, other in (("loop_a", "loop_b"), ("loop_b", "loop_a")):
        steps = _step(other, ("INPUT0", "INPUT1"), ("OUTPUT0", "OUTPUT1"))
        _write(repo / name / "config.pbtxt", _simple_ensemble_config(name, steps))
        (repo / name / "1").mkdir(parents=True)
    return repo


# model -> words its reason must contain (lower-cased), naming what is wrong.
EXPECTED_REASONS: dict[str, tuple[str, ...]] = {
    "bad_config": ("config.pbtxt", "parse"),
    "missing_file": ("model.onnx", "not found"),
    "wrong_input_name": ("image", "graph"),
    "wrong_input_type": ("input0", "fp32", "int32"),
    "cycle_ensemble": ("cycle",),
    "unknown_step": ("no_such_step_model",),
    "loop_a": ("loop_b",),
    "loop_b": ("loop_a",),
}


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    return live_server_factory(build_broken_repository(tmp_path_factory.mktemp("broken")))


def test_good_models_serve(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_ready()
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(client.infer("simple_ensemble", inputs).as_numpy("OUTPUT1"), 2 * b)


def test_index_gives_a_reason_for_each_broken_model(client: httpclient.InferenceServerClient) -> None:
    index = {entry["name"]: entry for entry in client.get_model_repository_index()}
    assert set(index) == {"simple", "simple_ensemble", *EXPECTED_REASONS}
    assert index["simple"]["state"] == "READY" and index["simple_ensemble"]["state"] == "READY"
    for name, words in EXPECTED_REASONS.items():
        entry = index[name]
        assert entry["state"] == "UNAVAILABLE", entry
        reason = entry.get("reason", "").lower()
        for word in words:
            assert word in reason, f"{name}: reason {entry.get('reason')!r} does not mention {word!r}"


def test_broken_models_are_not_ready_and_refuse_inference(
    server: LiveServer, client: httpclient.InferenceServerClient
) -> None:
    for name in EXPECTED_REASONS:
        assert not client.is_model_ready(name), name
        reply = HTTP.post(
            f"{server.http_base}/v2/models/{name}/infer",
            json={"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}]},
            timeout=10,
        )
        assert 400 <= reply.status_code < 600 and reply.status_code != 500, (name, reply.status_code)
        assert name in reply.json()["error"]
    with pytest.raises(InferenceServerException, match="bad_config"):
        client.get_model_metadata("bad_config")
