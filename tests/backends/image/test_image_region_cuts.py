"""How a crop_boxes output cuts regions for a region map (issue 11, moved from the region map to
its crop model): keep-ratio text-line crops up to max_width sharing a width bucket per request,
boxes in original pixels mapped onto a shrunk decode through IMAGE_META, PP-OCR's native crops;
and the region map's load-time check that its crop model cuts what its target takes."""

from __future__ import annotations

import numpy as np
import pytest

from packserve.backends.image import parse_plan
from packserve.backends.image.region_crops import keep_ratio_widths, region_sizes
from packserve.config.region_map import parse_region_map, validate_region_map
from packserve.errors import ConfigError
from packserve.messages import InferRequest
from packserve.model_spec import ModelSpec, TensorSpec, VersionPolicy
from packserve.types import DataType
from tests.fakes.backends import RecordingTimer
from tests.fakes.image import cpu_instance, output, spec

CROP_INPUTS = [
    output("IMAGE", DataType.UINT8, (-1, -1, 3)),
    output("BOXES", DataType.FP32, (-1, 8)),
    output("IMAGE_META", DataType.FP32, (6,)),
]
READ = {"mode": "crop_boxes", "CROPS.keep_ratio": "true"}
WIDE = READ | {"CROPS.min_width": "320", "CROPS.max_width": "2400", "CROPS.width_bucket": "160"}
FIXED_DIMS, WIDE_DIMS = (-1, 3, 48, 320), (-1, 3, 48, -1)


def crops_spec(parameters: dict[str, str], dims: tuple[int, ...] = WIDE_DIMS) -> ModelSpec:
    layout = parameters.get("CROPS.layout", "NCHW")
    if layout == "NHWC":
        dims = (dims[0], dims[2], dims[3], dims[1])
    return spec([output("CROPS", DataType.FP32, dims)], parameters, inputs=CROP_INPUTS, name="crops")


def quad(x: float, y: float, width: float, height: float) -> list[float]:
    return [x, y, x + width, y, x + width, y + height, x, y + height]


def cut(parameters: dict[str, str], image: np.ndarray, boxes: np.ndarray, meta: np.ndarray | None = None,
        dims: tuple[int, ...] = WIDE_DIMS) -> np.ndarray:  # fmt: skip
    inputs = {"IMAGE": image[None], "BOXES": boxes.astype(np.float32)[None]}
    if meta is not None:
        inputs["IMAGE_META"] = meta.astype(np.float32)[None]
    (result,) = cpu_instance(crops_spec(parameters, dims)).execute(
        [InferRequest(model_name="crops", inputs=inputs)], RecordingTimer()
    )
    assert isinstance(result, dict), result
    return np.asarray(result["CROPS"][0])


def test_each_line_keeps_its_ratio_and_the_request_shares_a_bucket() -> None:
    (pipeline,) = parse_plan(crops_spec(WIDE)).pipelines
    boxes = np.array([quad(0, 0, 100, 48), quad(0, 0, 1000, 48), quad(0, 0, 9000, 48)], np.float32)
    widths, canvas = keep_ratio_widths(pipeline, region_sizes(boxes))
    assert widths.tolist() == [100, 1000, 2400] and canvas == 2400
    widths, canvas = keep_ratio_widths(pipeline, region_sizes(boxes[:2]))
    assert widths.tolist() == [100, 1000] and canvas == 1120  # 1000 rounded up to 7 x 160
    widths, canvas = keep_ratio_widths(pipeline, region_sizes(boxes[:1]))
    assert canvas == 320  # never narrower than min_width, as PP-OCR pads to 320
    (fixed,) = parse_plan(crops_spec(READ, FIXED_DIMS)).pipelines
    assert keep_ratio_widths(fixed, region_sizes(boxes[1:2]))[0].tolist() == [320]  # fixed width: squeezed


def test_a_long_line_is_cut_at_full_resolution_from_a_shrunk_decode() -> None:
    # The original image is 3000 px wide; the decode was capped to 1500 (scale 0.5).
    decoded = np.full((100, 1500, 3), 255, np.uint8)
    decoded[20:44, 100:1100] = 0  # the line: x 200..2200, y 40..88 in original pixels
    meta = np.array([0.5, 0.5, 0, 0, 3000, 200], np.float32)
    parameters = WIDE | {"CROPS.layout": "NHWC", "CROPS.pad_value": "128", "CROPS.scale": "1"}
    crops = cut(parameters, decoded, np.array([quad(200, 40, 2000, 48)], np.float32), meta)
    # 2000 x 48 in the original (1000 x 24 on the canvas): 2000 px at height 48 -> bucket 2080
    assert crops.shape == (1, 48, 2080, 3)
    assert crops[0, 2:-2, 2:1998].max() < 1 and np.all(crops[0, :, 2000:] == 128)


def test_a_variable_width_needs_keep_ratio_and_a_variable_target_width() -> None:
    with pytest.raises(ConfigError, match="keep_ratio"):
        parse_plan(crops_spec(WIDE | {"CROPS.keep_ratio": "false"}))
    with pytest.raises(ConfigError, match="max_width"):
        parse_plan(crops_spec(WIDE | {"CROPS.max_width": "100"}))
    with pytest.raises(ConfigError, match="variable"):
        parse_plan(crops_spec(WIDE, FIXED_DIMS))
    with pytest.raises(ConfigError, match="crop_boxes mode only"):
        parse_plan(
            spec([output("OUT", DataType.FP32, (3, 8, 8))], {"OUT.op": "resize", "OUT.keep_ratio": "true"})
        )
    region_map = region_map_spec()
    plan = parse_region_map(region_map)
    crops = crops_spec(WIDE)
    with pytest.raises(ConfigError, match="variable width"):
        validate_region_map(plan, region_map, {"rec": target((3, 48, 320)), "crops": crops})
    validate_region_map(plan, region_map, {"rec": target((3, 48, -1)), "crops": crops})
    with pytest.raises(ConfigError, match="crop model 'crops' is not loaded"):
        validate_region_map(plan, region_map, {"rec": target((3, 48, -1))})


def test_native_crop_mode_cuts_at_the_region_size_then_resizes() -> None:
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 200, 3), dtype=np.uint8)
    line = np.array([quad(10.3, 5.6, 150.2, 30.1)], np.float32)
    parameters = READ | {"CROPS.crop_mode": "native", "CROPS.layout": "NHWC", "CROPS.scale": "1"}
    crops = cut(parameters, image, line, dims=FIXED_DIMS)
    # PP-OCR by hand: a 150x30 whole-pixel cut (bicubic, replicated border), then 240x48 bilinear.
    source = line.reshape(4, 2)
    target_corners = np.array([[0, 0], [150, 0], [150, 30], [0, 30]], np.float32)
    piece = cv2.warpPerspective(
        image, cv2.getPerspectiveTransform(source, target_corners), (150, 30),
        flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    expected = cv2.resize(piece, (240, 48), interpolation=cv2.INTER_LINEAR)
    assert crops.shape == (1, 48, 320, 3)
    assert np.array_equal(crops[0, :, :240], expected.astype(np.float32))
    with pytest.raises(ConfigError, match="crop_mode"):
        parse_plan(crops_spec(READ | {"CROPS.crop_mode": "warp"}, FIXED_DIMS))


def region_map_spec() -> ModelSpec:
    return ModelSpec(
        name="read",
        platform="region_map",
        backend="",
        max_batch_size=0,
        inputs=(
            TensorSpec("IMAGE", DataType.UINT8, (-1, -1, 3)),
            TensorSpec("BOXES", DataType.FP32, (-1, 8)),
            TensorSpec("IMAGE_META", DataType.FP32, (6,)),
        ),
        outputs=(TensorSpec("PROBS", DataType.FP32, (-1, -1, 5)),),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
        parameters={
            "crop_model": "crops",
            "model": "rec",
            "output_map": "PROBS=probs",
            "image_meta_input": "IMAGE_META",
        },
    )


def target(dims: tuple[int, ...]) -> ModelSpec:
    return ModelSpec(
        name="rec",
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        max_batch_size=8,
        inputs=(TensorSpec("x", DataType.FP32, dims),),
        outputs=(TensorSpec("probs", DataType.FP32, (-1, 5)),),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
        parameters={},
    )


def test_crops_normalize_in_float32_steps_as_region_maps_always_did() -> None:
    """(pixel * scale - mean) / std in float32 steps, bit for bit: the arithmetic the region maps
    normalized their crops with before the crops moved to crop models."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)
    boxes = np.array([quad(5.5, 7.25, 90, 30), quad(20, 40, 60, 25)], np.float32)
    cropper = cpu_instance(
        spec(
            [
                output("RAW", DataType.UINT8, (-1, 3, 48, 192)),
                output("CROPS", DataType.FP32, (-1, 3, 48, 192)),
            ],
            READ
            | {"RAW.keep_ratio": "true", "CROPS.color": "BGR", "RAW.color": "BGR"}
            | {"CROPS.scale": "1/255", "CROPS.mean": "0.485,0.456,0.406", "CROPS.std": "0.229,0.224,0.225"},
            inputs=CROP_INPUTS,
            name="crops",
        )
    )
    inputs = {"IMAGE": image[None], "BOXES": boxes[None]}
    (result,) = cropper.execute([InferRequest(model_name="crops", inputs=inputs)], RecordingTimer())
    assert isinstance(result, dict), result
    raw, crops = np.asarray(result["RAW"][0]), np.asarray(result["CROPS"][0])
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    expected = (raw.astype(np.float32) * np.float32(1 / 255) - mean) / std
    assert crops.dtype == np.float32 and np.array_equal(crops, expected)


def test_a_gpu_instance_cuts_shaped_crops_on_the_host() -> None:
    """The torch crop warps to a fixed size only: keep_ratio / native / variable widths are cut on
    the host by a KIND_GPU instance too, the same crops as a KIND_CPU instance's."""
    pytest.importorskip("torch")
    from packserve.backends.image.gpu import GpuImageInstance

    parameters = WIDE | {"CROPS.crop_mode": "native", "CROPS.mean": "0.5", "CROPS.std": "0.5"}
    image = np.random.default_rng(5).integers(0, 255, (60, 300, 3), dtype=np.uint8)
    boxes = np.array([quad(3, 4, 280, 30), quad(10, 35, 40, 20)], np.float32)
    request = InferRequest(model_name="crops", inputs={"IMAGE": image[None], "BOXES": boxes[None]})
    gpu = GpuImageInstance(parse_plan(crops_spec(parameters)), "cpu")
    try:
        (on_gpu_kind,) = gpu.execute([request], RecordingTimer())
    finally:
        gpu.close()
    assert isinstance(on_gpu_kind, dict) and isinstance(on_gpu_kind["CROPS"], np.ndarray)
    np.testing.assert_array_equal(on_gpu_kind["CROPS"][0], cut(parameters, image, boxes))
