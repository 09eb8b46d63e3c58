"""The pure parts of bench/vision_stack.py: perf_analyzer input, statistics deltas, tables, JSON,
and the ensemble walker the two reference layouts share (driven by a fake model caller)."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bench.vision_stack import decode_evidence
from bench.vision_stack_baseline.pipeline import PipelineExecutor, Tensors
from bench.vision_stack_baseline.results import (
    BenchReport,
    LoadPoint,
    ModelStat,
    model_stat_deltas,
    percentile_ms,
    perf_analyzer_input_data,
    stats_table,
    throughput_table,
    write_json,
    write_plot,
)
from packserve.errors import InvalidArgumentError
from packserve.model_spec import EnsembleStepSpec, ModelSpec, TensorSpec, VersionPolicy
from packserve.types import DataType


def test_input_data_holds_the_image_as_one_serialized_bytes_element() -> None:
    image = b"\xff\xd8\xff\xe0 not really a jpeg \x00\x01"
    body = perf_analyzer_input_data("IMAGE", image, [1, 1])
    tensor = body["data"][0]["IMAGE"]
    assert tensor["shape"] == [1, 1]
    raw = base64.b64decode(tensor["content"]["b64"])
    (length,) = struct.unpack("<I", raw[:4])
    assert length == len(image) and raw[4:] == image


def test_percentile_is_nearest_rank_in_ms() -> None:
    latencies = [0.001 * i for i in range(1, 101)]  # 1..100 ms
    assert percentile_ms(latencies, 50) == pytest.approx(50.0)
    assert percentile_ms(latencies, 99) == pytest.approx(99.0)
    assert math.isnan(percentile_ms([], 50))


def _stats(name: str, success: int, executions: int, queue_ns: int, infer_ns: int) -> dict[str, object]:
    return {
        "name": name,
        "execution_count": executions,
        "inference_stats": {
            "success": {"count": success, "ns": 0},
            "queue": {"count": success, "ns": queue_ns},
            "compute_input": {"count": success, "ns": 0},
            "compute_infer": {"count": success, "ns": infer_ns},
            "compute_output": {"count": success, "ns": 0},
        },
    }


def test_stat_deltas_average_per_new_request_and_drop_idle_models() -> None:
    before = {"model_stats": [_stats("det", 10, 10, 10_000_000, 100_000_000), _stats("idle", 3, 3, 0, 0)]}
    after = {
        "model_stats": [
            _stats("det", 30, 15, 50_000_000, 500_000_000),
            _stats("idle", 3, 3, 0, 0),
            _stats("new", 4, 1, 4_000_000, 8_000_000),
        ]
    }
    stats = {s.model: s for s in model_stat_deltas(before, after)}
    assert set(stats) == {"det", "new"}
    det = stats["det"]
    assert (det.requests, det.executions) == (20, 5)
    assert det.avg_batch == pytest.approx(4.0)
    assert det.queue_ms == pytest.approx(2.0) and det.compute_ms == pytest.approx(20.0)
    assert stats["new"].compute_ms == pytest.approx(2.0)


def test_stat_deltas_reject_a_malformed_answer() -> None:
    after = {"model_stats": [{"name": "det", "inference_stats": {"success": {"count": "many"}}}]}
    with pytest.raises(InvalidArgumentError, match="malformed"):
        model_stat_deltas({}, after)


def _report() -> BenchReport:
    report = BenchReport(machine_load="load average: 1.0", image_bytes=1234)
    report.points += [
        LoadPoint("served", 1, 4.0, 250.0, 300.0),
        LoadPoint("per_model", 1, 2.0, 500.0, 700.0),
        LoadPoint("served", 8, 5.0, 1600.0, 2000.0),
    ]
    report.bare_loop += [
        {"batch_size": 1, "workers": 2, "images_per_s": 5.0},
        {"batch_size": 8, "workers": 2, "images_per_s": 4.0},
    ]
    report.served_stats[1] = [ModelStat("text_det", 10, 10, 1.0, 200.0)]
    return report


def test_table_shows_both_acceptance_ratios() -> None:
    console = Console(record=True, width=200)
    console.print(throughput_table(_report()))
    console.print(stats_table(1, _report().served_stats[1]))
    text = console.export_text()
    assert "0.80x" in text  # served c=1 against the best bare loop (5.0)
    assert "2.00x" in text  # served against per-model at c=1
    assert "bare loop b8 x2" in text and "text_det" in text


def test_json_and_plot_are_written(tmp_path: Path) -> None:
    report = _report()
    body = json.loads(write_json(report, tmp_path / "r.json").read_text())
    assert body["bare_loop_best_images_per_s"] == 5.0
    assert body["served_stats"]["1"][0]["avg_batch"] == 1.0
    assert {p["layout"] for p in body["points"]} == {"served", "per_model"}
    plot = write_plot(report, tmp_path / "p.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decode_evidence_needs_one_face_crop_per_image() -> None:
    good = decode_evidence([ModelStat("vision_preprocess", 12, 12, 0, 5), ModelStat("onet", 12, 12, 0, 1)])
    assert good["jpeg_decoded"] and good["faces_per_image"] == 1.0
    assert not decode_evidence([ModelStat("vision_preprocess", 12, 12, 0, 5)])["jpeg_decoded"]


# A tiny ensemble: decode (batching) -> det (one request per image) -> region map over cls.
def _tensor(name: str, datatype: DataType, dims: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(name, datatype, dims)


def _spec(
    name: str,
    platform: str,
    batch: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    parameters: dict[str, str] | None = None,
    ensemble_steps: tuple[EnsembleStepSpec, ...] = (),
) -> ModelSpec:
    return ModelSpec(
        name, platform, "", batch, tuple(inputs), tuple(outputs), None, (), VersionPolicy(), "model",
        parameters or {}, ensemble_steps,
    )  # fmt: skip


FP32, UINT8, BYTES = DataType.FP32, DataType.UINT8, DataType.BYTES
SPECS = {
    "decode": _spec(
        "decode", "", 4, [_tensor("IMAGE", BYTES, (1,))],
        [_tensor("pixels", UINT8, (8, 8, 3)), _tensor("unused", FP32, (1,))],
    ),
    "det": _spec("det", "", 0, [_tensor("PIXELS", UINT8, (1, 8, 8, 3))], [_tensor("BOXES", FP32, (-1, 4))]),
    "crops": _spec(
        "crops", "region_map", 0,
        [_tensor("IMAGE", UINT8, (1, -1, -1, 3)), _tensor("BOXES", FP32, (-1, 4))],
        [_tensor("P", FP32, (-1, 1))],
        parameters={"crop_model": "cut", "model": "cls", "output_map": "P=mean"},
    ),
    "cut": _spec(
        "cut", "", 0, [_tensor("IMAGE", UINT8, (-1, -1, 3)), _tensor("BOXES", FP32, (-1, 4))],
        [_tensor("CROPS", FP32, (-1, 2, 2, 3))],
    ),
    "cls": _spec("cls", "", 3, [_tensor("input", FP32, (2, 2, 3))], [_tensor("mean", FP32, (1,))]),
}  # fmt: skip
ENSEMBLE = _spec(
    "stack", "ensemble", 0, [_tensor("IMAGE", BYTES, (1, 1))], [_tensor("P", FP32, (-1, 1))],
    ensemble_steps=(
        EnsembleStepSpec("decode", -1, {"IMAGE": "IMAGE"}, {"pixels": "img", "unused": "spare"}),
        EnsembleStepSpec("det", -1, {"PIXELS": "img"}, {"BOXES": "boxes"}),
        EnsembleStepSpec("crops", -1, {"IMAGE": "img", "BOXES": "boxes"}, {"P": "P"}),
    ),
)  # fmt: skip


class FakeModels:
    """Decode fills the image with its byte length; det finds (length - 1) boxes; cut crops them
    (2x2 of the image's value); cls averages."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int], list[str]]] = []

    def __call__(self, model: str, requests: Sequence[Tensors], wanted: Sequence[str]) -> list[Tensors]:
        self.calls.append((model, [len(next(iter(r.values()))) for r in requests], list(wanted)))
        if model == "decode":
            return [{"pixels": np.full((1, 8, 8, 3), len(r["IMAGE"][0, 0]), np.uint8)} for r in requests]
        if model == "det":
            counts = [int(r["PIXELS"][0, 0, 0, 0]) - 1 for r in requests]
            return [{"BOXES": np.array([[0, 0, 4, 4]] * n, np.float32).reshape(n, 4)} for n in counts]
        if model == "cut":
            return [
                {"CROPS": np.full((len(r["BOXES"]), 2, 2, 3), r["IMAGE"][0, 0, 0], np.float32)} for r in requests
            ]
        return [
            {"mean": r["input"].reshape(len(r["input"]), -1).mean(axis=1, keepdims=True)} for r in requests
        ]


def test_executor_walks_steps_and_spreads_region_crops_back_per_image() -> None:
    fake = FakeModels()
    images = [b"ab", b"a", b"abc"]  # 1, 0 and 2 boxes
    out = PipelineExecutor(ENSEMBLE, SPECS, fake).run(images)
    assert [o["P"].shape for o in out] == [(1, 1), (0, 1), (2, 1)]
    assert out[0]["P"][0, 0] == pytest.approx(2.0) and np.allclose(out[2]["P"], 3.0)
    calls = {model: (rows, wanted) for model, rows, wanted in fake.calls}
    assert calls["decode"] == ([1, 1, 1], ["pixels"])  # "unused" is read by no step: not asked for
    assert calls["cls"][0] == [3]  # three crops of three images, one chunk of max_batch_size rows
    assert [rows for model, rows, _ in fake.calls if model == "cut"] == [[8], [8]]  # images with boxes


def test_executor_only_runs_the_selected_steps() -> None:
    fake = FakeModels()
    out = PipelineExecutor(ENSEMBLE, SPECS, fake, only=("decode", "det")).run([b"abc"])
    assert [model for model, _, _ in fake.calls] == ["decode", "det"]
    assert fake.calls[0][2] == ["pixels"] and "P" not in out[0]
