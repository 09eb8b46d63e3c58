"""Keep-ratio text-line crops wider than crop_size (issue 11): each crop keeps its aspect ratio up
to max_crop_width, a request's crops share a width bucket, and boxes in original pixels are
mapped onto a shrunk decode through IMAGE_META."""

from __future__ import annotations

import numpy as np
import pytest

from packserve.core.region_map import (
    RegionMapParams,
    crop_and_normalize,
    keep_ratio_widths,
    to_canvas,
    validate_region_map,
)
from packserve.errors import ConfigError
from packserve.model_spec import ModelSpec, TensorSpec, VersionPolicy
from packserve.types import DataType


def spec(parameters: dict[str, str], name: str = "read", **kwargs: object) -> ModelSpec:
    defaults: dict[str, object] = {
        "platform": "region_map",
        "backend": "",
        "max_batch_size": 0,
        "inputs": (
            TensorSpec("IMAGE", DataType.UINT8, (-1, -1, 3)),
            TensorSpec("BOXES", DataType.FP32, (-1, 8)),
            TensorSpec("IMAGE_META", DataType.FP32, (6,)),
        ),
        "outputs": (TensorSpec("PROBS", DataType.FP32, (-1, -1, 5)),),
    }
    defaults |= kwargs
    return ModelSpec(
        name=name,
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
        parameters=parameters,
        **defaults,  # type: ignore[arg-type]
    )


READ = {"model": "rec", "output_map": "PROBS=probs", "crop_size": "320x48", "keep_ratio": "true"}
WIDE = READ | {"max_crop_width": "2400", "width_bucket": "160", "image_meta_input": "IMAGE_META"}


def quad(x: float, y: float, width: float, height: float) -> list[float]:
    return [x, y, x + width, y, x + width, y + height, x, y + height]


def test_each_line_keeps_its_ratio_and_the_request_shares_a_bucket() -> None:
    params = RegionMapParams.from_spec(spec(WIDE))
    boxes = np.array([quad(0, 0, 100, 48), quad(0, 0, 1000, 48), quad(0, 0, 9000, 48)], np.float32)
    widths, canvas = keep_ratio_widths(boxes, params)
    assert widths.tolist() == [100, 1000, 2400] and canvas == 2400
    widths, canvas = keep_ratio_widths(boxes[:2], params)
    assert widths.tolist() == [100, 1000] and canvas == 1120  # 1000 rounded up to 7 x 160
    widths, canvas = keep_ratio_widths(boxes[:1], params)
    assert canvas == 320  # never narrower than crop_size, as PP-OCR pads to 320
    old = RegionMapParams.from_spec(spec(READ))
    assert keep_ratio_widths(boxes[1:2], old)[0].tolist() == [320]  # without max_crop_width: squeezed


def test_a_long_line_is_cut_at_full_resolution_from_a_shrunk_decode() -> None:
    # The original image is 3000 px wide; the decode was capped to 1500 (scale 0.5).
    decoded = np.full((100, 1500, 3), 255, np.uint8)
    decoded[20:44, 100:1100] = 0  # the line: x 200..2200, y 40..88 in original pixels
    meta = np.array([0.5, 0.5, 0, 0, 3000, 200], np.float32)
    params = RegionMapParams.from_spec(spec(WIDE | {"layout": "NHWC", "pad_value": "128"}))
    boxes = to_canvas(np.array([quad(200, 40, 2000, 48)], np.float32), meta)
    crops = crop_and_normalize(decoded, boxes, params)
    # 2000 x 48 in the original (1000 x 24 on the canvas): 2000 px at height 48 -> bucket 2080
    assert crops.shape == (1, 48, 2080, 3)
    assert crops[0, 2:-2, 2:1998].max() < 1 and np.all(crops[0, :, 2000:] == 128)


def test_max_crop_width_needs_keep_ratio_and_a_variable_target_width() -> None:
    with pytest.raises(ConfigError, match="keep_ratio"):
        RegionMapParams.from_spec(spec(WIDE | {"keep_ratio": "false"}))
    with pytest.raises(ConfigError, match="max_crop_width"):
        RegionMapParams.from_spec(spec(WIDE | {"max_crop_width": "100"}))
    fixed = spec(
        {},
        name="rec",
        max_batch_size=8,
        inputs=(TensorSpec("x", DataType.FP32, (3, 48, 320)),),
        outputs=(TensorSpec("probs", DataType.FP32, (-1, 5)),),
    )
    with pytest.raises(ConfigError, match="variable width"):
        validate_region_map(spec(WIDE), {"rec": fixed})
    variable = spec(
        {},
        name="rec",
        max_batch_size=8,
        inputs=(TensorSpec("x", DataType.FP32, (3, 48, -1)),),
        outputs=(TensorSpec("probs", DataType.FP32, (-1, 5)),),
    )
    validate_region_map(spec(WIDE), {"rec": variable})


def test_native_crop_mode_cuts_at_the_region_size_then_resizes() -> None:
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 200, 3), dtype=np.uint8)
    line = np.array([quad(10.3, 5.6, 150.2, 30.1)], np.float32)
    params = RegionMapParams.from_spec(spec(READ | {"crop_mode": "native", "layout": "NHWC"}))
    crops = crop_and_normalize(image, line, params)
    # PP-OCR by hand: a 150x30 whole-pixel cut (bicubic, replicated border), then 240x48 bilinear.
    source = line.reshape(4, 2)
    target = np.array([[0, 0], [150, 0], [150, 30], [0, 30]], np.float32)
    cut = cv2.warpPerspective(
        image, cv2.getPerspectiveTransform(source, target), (150, 30),
        flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    expected = cv2.resize(cut, (240, 48), interpolation=cv2.INTER_LINEAR)
    assert crops.shape == (1, 48, 320, 3)
    assert np.array_equal(crops[0, :, :240], expected.astype(np.float32))
    with pytest.raises(ConfigError, match="crop_mode"):
        RegionMapParams.from_spec(spec(READ | {"crop_mode": "warp"}))
