"""bench/pipeline_budget: option parsing, the two repositories' configs (parsed as Triton model
configs), the request body and the per-step statistics table. Nothing is served or exported."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench.pipeline_budget import repositories
from bench.pipeline_budget.__main__ import parse_args, step_table
from bench.pipeline_budget.load import infer_body


def test_options() -> None:
    args = parse_args([])
    assert args.systems == ["bare", "packserve", "packserve_noslots", "triton"]
    assert args.concurrency == [1, 8, 32] and args.open_loop_fraction == 0.8
    args = parse_args(["--systems", "packserve,packserve_noslots", "--concurrency", "8,32", "--repeat", "3"])
    assert args.systems == ["packserve", "packserve_noslots"] and args.concurrency == [8, 32]
    with pytest.raises(SystemExit):
        parse_args(["--systems", "packserve,litserve"])
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "0"])


@pytest.mark.parametrize(
    "writer", [repositories.write_packserve_repository, repositories.write_triton_repository]
)
def test_repositories_have_the_same_models_and_batching(tmp_path: Path, writer: object) -> None:
    onnx = {}
    for name in repositories.NETWORKS:
        onnx[name] = tmp_path / f"{name}.onnx"
        onnx[name].write_bytes(b"not read here")
    root = writer(tmp_path / "repo", onnx)  # type: ignore[operator]
    configs = {}
    for config_path in sorted(root.glob("*/config.pbtxt")):
        configs[config_path.parent.name] = text_format.Parse(
            config_path.read_text(), model_config_pb2.ModelConfig()
        )
    assert set(configs) == {"pipeline", "pipeline_pre", *repositories.NETWORKS}
    for name, config in configs.items():
        assert config.max_batch_size == repositories.MAX_BATCH
        if name != "pipeline":
            assert config.dynamic_batching.max_queue_delay_microseconds == repositories.QUEUE_DELAY_US
            assert config.instance_group[0].count == repositories.INSTANCES
    assert [step.model_name for step in configs["pipeline"].ensemble_scheduling.step] == [
        "pipeline_pre",
        *repositories.NETWORKS,
    ]


def test_request_body_carries_the_image_as_one_binary_bytes_tensor() -> None:
    body, headers = infer_body(["RESNET_TOP1"], b"\xff\xd8jpeg")
    size = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:size])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == 4 + 6
    assert body[size:] == struct.pack("<I", 6) + b"\xff\xd8jpeg"


def test_step_table() -> None:
    before = {"m": {"inferences": 10, "executions": 5, "queue_ns": 0, "compute_ns": 0, "requests": 10}}
    after = {"m": {"inferences": 30, "executions": 10, "queue_ns": 40e6, "compute_ns": 100e6, "requests": 30}}
    assert step_table(before, after) == {
        "m": {"avg_batch": 4.0, "queue_ms_per_request": 2.0, "compute_ms_per_request": 5.0}
    }
