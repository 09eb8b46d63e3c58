"""region_map: its crop model cuts every box, the crops go as batch rows to the target model and
come back per request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    BatchResult,
    ExecutionTimer,
    InstanceContext,
)
from packserve.backends.image.model import CpuImageInstance
from packserve.backends.image.region_crops import expand_regions, region_sizes
from packserve.core.engine import Engine, EngineOptions
from packserve.errors import ConfigError, InvalidArgumentError
from packserve.messages import InferRequest
from tests.fakes.registry import BackendRegistry

BATCH_SIZES: list[int] = []


class MeanModel(BackendModel):
    """The target: mean pixel value of each crop (NHWC float rows)."""

    default_model_filename = "model.txt"

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        return _MeanInstance()


class _MeanInstance(BackendInstance):
    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        BATCH_SIZES.append(sum(len(r.inputs["CROP"]) for r in requests))
        return [{"MEAN": r.inputs["CROP"].mean(axis=(1, 2, 3)).reshape(-1, 1)} for r in requests]


@pytest.fixture
def repository(tmp_path: Path, backend_registry: BackendRegistry) -> Path:
    backend_registry.add("crop_mean", MeanModel)
    (tmp_path / "mean" / "1").mkdir(parents=True)
    (tmp_path / "mean" / "1" / "model.txt").write_text("x")
    (tmp_path / "mean" / "config.pbtxt").write_text(
        """
backend: "crop_mean"
max_batch_size: 4
input [ { name: "CROP" data_type: TYPE_FP32 dims: [ 4, 4, 3 ] } ]
output [ { name: "MEAN" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
"""
    )
    (tmp_path / "crops" / "1").mkdir(parents=True)
    (tmp_path / "crops" / "config.pbtxt").write_text(CROPS_CONFIG)
    (tmp_path / "regions" / "1").mkdir(parents=True)
    (tmp_path / "regions" / "config.pbtxt").write_text(
        """
platform: "region_map"
max_batch_size: 0
input [ { name: "IMAGE" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] },
        { name: "BOXES" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "MEANS" data_type: TYPE_FP32 dims: [ -1, 1 ] } ]
parameters { key: "crop_model" value { string_value: "crops" } }
parameters { key: "model" value { string_value: "mean" } }
parameters { key: "output_map" value { string_value: "MEANS=MEAN" } }
"""
    )
    return tmp_path


# The image model that cuts the crops: 4x4 NHWC, raw pixel values as FP32 (scale 1).
CROPS_CONFIG = """
backend: "image"
max_batch_size: 8
input [ { name: "IMAGE" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] },
        { name: "BOXES" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "CROPS" data_type: TYPE_FP32 dims: [ -1, 4, 4, 3 ] } ]
parameters { key: "mode" value { string_value: "crop_boxes" } }
parameters { key: "CROPS.layout" value { string_value: "NHWC" } }
parameters { key: "CROPS.scale" value { string_value: "1" } }
dynamic_batching { }
instance_group [ { kind: KIND_CPU count: 1 } ]
"""


def quadrant_image() -> np.ndarray:
    """40x40 image whose four 20x20 quadrants are filled with 10, 20, 30, 40."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[:20, :20], image[:20, 20:], image[20:, :20], image[20:, 20:] = 10, 20, 30, 40
    return image


QUADRANTS = np.array([[0, 0, 20, 20], [20, 0, 40, 20], [0, 20, 20, 40], [20, 20, 40, 40]], np.float32)


async def test_every_region_runs_through_the_target_in_batches(repository: Path) -> None:
    engine = await Engine.start(EngineOptions(model_repository=repository))
    try:
        assert engine.model_ready("regions"), engine.repository_index()
        boxes = np.concatenate([QUADRANTS, QUADRANTS[::-1]])  # 8 regions: two chunks of 4
        response = await engine.infer(InferRequest("regions", {"IMAGE": quadrant_image(), "BOXES": boxes}))
        np.testing.assert_allclose(
            response.outputs["MEANS"].ravel(), [10, 20, 30, 40, 40, 30, 20, 10], atol=0.5
        )
        assert max(BATCH_SIZES) <= 4

        empty = await engine.infer(
            InferRequest("regions", {"IMAGE": quadrant_image(), "BOXES": np.zeros((0, 4), np.float32)})
        )
        assert empty.outputs["MEANS"].shape == (0, 1)

        # Crops of concurrent requests share the target's batches.
        BATCH_SIZES.clear()
        one = QUADRANTS[:1]
        await asyncio.gather(
            *(
                engine.infer(InferRequest("regions", {"IMAGE": quadrant_image(), "BOXES": one}))
                for _ in range(4)
            )
        )
        assert max(BATCH_SIZES) > 1
    finally:
        await engine.shutdown()


async def test_bad_boxes_fail_that_request_only(repository: Path) -> None:
    engine = await Engine.start(EngineOptions(model_repository=repository))
    try:
        with pytest.raises(InvalidArgumentError, match="BOXES"):
            await engine.infer(
                InferRequest("regions", {"IMAGE": quadrant_image(), "BOXES": np.zeros((2, 3), np.float32)})
            )
        ok = await engine.infer(InferRequest("regions", {"IMAGE": quadrant_image(), "BOXES": QUADRANTS[:1]}))
        assert ok.outputs["MEANS"].shape == (1, 1)
    finally:
        await engine.shutdown()


async def test_region_map_with_unknown_target_is_unavailable(repository: Path) -> None:
    (repository / "mean" / "config.pbtxt").unlink()
    for path in sorted((repository / "mean").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (repository / "mean").rmdir()
    engine = await Engine.start(EngineOptions(model_repository=repository))
    try:
        entry = next(e for e in engine.repository_index() if e.name == "regions")
        assert entry.state == "UNAVAILABLE" and "mean" in entry.reason
    finally:
        await engine.shutdown()


def test_region_geometry() -> None:
    boxes = np.array([[10, 10, 20, 30]], np.float32)
    np.testing.assert_allclose(expand_regions(boxes, 2.0), [[5, 0, 25, 40]])
    quad = np.array([[0, 0, 8, 0, 8, 2, 0, 2]], np.float32)
    widths, heights = region_sizes(quad)
    assert (widths[0], heights[0]) == (8, 2)


async def test_explicit_load_of_a_region_map_loads_its_target(repository: Path) -> None:
    engine = await Engine.start(EngineOptions(repository, "explicit", ()))
    try:
        await engine.load_model("regions")
        assert engine.model_ready("regions") and engine.model_ready("mean") and engine.model_ready("crops")
        await engine.unload_model("regions", unload_dependents=True)
        assert not engine.model_ready("mean") and not engine.model_ready("crops")
    finally:
        await engine.shutdown()


async def test_crops_are_batched_counted_and_bounded_by_the_crop_model(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crop model is an ordinary model: its statistics count every region map request's crops,
    its batcher mixes concurrent ones, and no more executions overlap than it has instances."""
    running, overlaps = [0], [0]
    lock = threading.Lock()
    execute = CpuImageInstance.execute

    def slow_execute(
        self: CpuImageInstance, requests: Sequence[InferRequest], timer: ExecutionTimer
    ) -> BatchResult:
        with lock:
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
        try:
            time.sleep(0.2)  # the other requests queue behind this one meanwhile
            return execute(self, requests, timer)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(CpuImageInstance, "execute", slow_execute)
    engine = await Engine.start(EngineOptions(model_repository=repository))
    try:
        requests = 6
        responses = await asyncio.gather(
            *(
                engine.infer(InferRequest("regions", {"IMAGE": quadrant_image(), "BOXES": QUADRANTS}))
                for _ in range(requests)
            )
        )
        for response in responses:
            np.testing.assert_allclose(response.outputs["MEANS"].ravel(), [10, 20, 30, 40], atol=0.5)
        (crops,) = engine.model_statistics("crops")
        assert crops.inference_count == requests
        assert crops.execution_count < requests  # batched: requests that queued ran together
        assert overlaps[0] == 1  # one instance: one execution at a time
        assert crops.inference_stats.success.count == requests
        (regions,) = engine.model_statistics("regions")
        assert regions.inference_stats.success.count == requests
    finally:
        await engine.shutdown()


async def test_crop_model_must_cut_what_the_target_takes(repository: Path) -> None:
    wrong = CROPS_CONFIG.replace("dims: [ -1, 4, 4, 3 ]", "dims: [ -1, 8, 8, 3 ]")
    (repository / "crops" / "config.pbtxt").write_text(wrong)
    engine = await Engine.start(EngineOptions(model_repository=repository))
    try:
        entry = next(e for e in engine.repository_index() if e.name == "regions")
        assert entry.state == "UNAVAILABLE" and "crop model 'crops' output 'CROPS'" in entry.reason
    finally:
        await engine.shutdown()


def test_crop_keys_on_the_region_map_point_to_the_crop_model(repository: Path) -> None:
    from packserve.backends.registry import load_backend
    from packserve.config.loader import load_model_config

    config = repository / "regions" / "config.pbtxt"
    config.write_text(config.read_text() + 'parameters { key: "crop_size" value { string_value: "4x4" } }\n')
    with pytest.raises(ConfigError, match=r"\['crop_size'\] belong to its crop model 'crops'"):
        load_model_config(repository / "regions", backends=load_backend)
