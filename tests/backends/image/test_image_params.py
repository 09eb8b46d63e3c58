from __future__ import annotations

import pytest

from packserve.backends.image import parse_plan
from packserve.errors import ConfigError
from packserve.types import DataType
from tests.fakes.image import IMAGE_INPUT, output, spec

DET = output("DET", DataType.FP32, (3, 640, 640))


def test_full_schema_parses() -> None:
    plan = parse_plan(
        spec(
            [
                DET,
                output("DET_meta", DataType.FP32, (6,)),
                output("CLS", DataType.FP16, (224, 224, 3)),
                output("RAW", DataType.UINT8, (1080, 1920, 3)),
            ],
            {
                "DET.op": "letterbox",
                "DET.pad_value": "0",
                "DET.align": "top_left",
                "CLS.op": "center_crop",
                "CLS.layout": "NHWC",
                "CLS.color": "bgr",
                "CLS.mean": "0.485, 0.456, 0.406",
                "CLS.std": "0.229,0.224,0.225",
                "CLS.interpolation": "area",
                "RAW.op": "decoded",
                "max_pixels": "1000000",
                "exif_orientation": "false",
                "threads": "2",
            },
        )
    )
    det, cls, raw = plan.pipelines
    assert (det.width, det.height, det.meta_name, det.pad_value, det.center) == (
        640,
        640,
        "DET_meta",
        0,
        False,
    )
    assert det.normalization is not None and det.normalization.scale == pytest.approx(1 / 255)
    assert (cls.layout, cls.color, cls.dtype, cls.resize_shorter, cls.interpolation) == (
        "NHWC",
        "BGR",
        DataType.FP16,
        256,
        "area",
    )
    assert cls.normalization is not None and cls.normalization.std == (0.229, 0.224, 0.225)
    assert (raw.layout, raw.width, raw.height, raw.normalization) == ("HWC", 1920, 1080, None)
    assert (plan.decode.max_pixels, plan.decode.exif_orientation, plan.threads) == (1_000_000, False, 2)
    assert plan.input_name == "IMAGE" and plan.mode == "decode"


@pytest.mark.parametrize(
    ("outputs", "parameters", "message"),
    [
        ([DET], {"DET.op": "letterbox", "colour": "RGB"}, "unknown parameter 'colour'"),
        ([DET], {"DET.op": "letterbox", "DET.sizee": "2"}, "names no output option"),
        ([DET], {}, "needs parameter 'DET.op'"),
        ([DET], {"DET.op": "warp"}, "must be one of letterbox"),
        ([output("DET", DataType.FP32, (640, 640, 3))], {"DET.op": "letterbox"}, r"dims \[3, H, W\]"),
        ([output("DET", DataType.FP32, (3, -1, -1))], {"DET.op": "letterbox"}, "fixed H and W"),
        ([output("DET", DataType.INT32, (3, 8, 8))], {"DET.op": "resize"}, "FP32, FP16 or UINT8"),
        (
            [output("D", DataType.UINT8, (3, 8, 8))],
            {"D.op": "resize", "D.mean": "1"},
            "takes no normalization",
        ),
        ([DET], {"DET.op": "letterbox", "DET.std": "0,1,1"}, "positive numbers"),
        ([DET], {"DET.op": "letterbox", "DET.mean": "1,2"}, "1 or 3 comma-separated"),
        ([DET], {"DET.op": "letterbox", "DET.scale": "1/0"}, "a number"),
        ([DET], {"DET.op": "letterbox", "DET.pad_value": "300"}, r"\[0, 255\]"),
        ([DET], {"DET.op": "shorter_side"}, "needs 'DET.shorter'"),
        ([DET, output("DET_meta", DataType.FP32, (4,))], {"DET.op": "letterbox"}, "FP32 \\[6\\]"),
        ([output("R", DataType.FP32, (8, 8, 3))], {"R.op": "decoded"}, "UINT8"),
        ([DET], {"DET.op": "letterbox", "max_pixels": "lots"}, "an integer"),
    ],
)
def test_config_errors_name_the_problem(outputs: list, parameters: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_plan(spec(outputs, parameters))
    assert "image model 'prep'" in str(info.value)


def test_decode_mode_needs_one_bytes_input() -> None:
    with pytest.raises(ConfigError, match="exactly one BYTES input"):
        parse_plan(spec([DET], {"DET.op": "letterbox"}, inputs=[output("IMAGE", DataType.UINT8, (1,))]))
    with pytest.raises(ConfigError, match="exactly one BYTES input"):
        parse_plan(spec([DET], {"DET.op": "letterbox"}, inputs=[IMAGE_INPUT, IMAGE_INPUT]))


def test_crop_mode_inputs() -> None:
    inputs = [
        output("IMAGE", DataType.UINT8, (-1, -1, 3)),
        output("BOXES", DataType.FP32, (-1, 4)),
        output("IMAGE_META", DataType.FP32, (6,)),
    ]
    crops = output("CROPS", DataType.FP32, (-1, 3, 48, 160))
    plan = parse_plan(spec([crops], {"mode": "crop_boxes", "image_color": "BGR"}, inputs=inputs))
    assert plan.crop is not None and plan.crop.image_meta == "IMAGE_META" and plan.crop.image_color == "BGR"
    assert plan.pipelines[0].op == "crop" and (plan.pipelines[0].width, plan.pipelines[0].height) == (160, 48)
    with pytest.raises(ConfigError, match="needs a FP32"):
        parse_plan(spec([crops], {"mode": "crop_boxes"}, inputs=inputs[:1]))
    with pytest.raises(ConfigError, match=r"\[-1, 3, H, W\]"):
        parse_plan(
            spec([output("CROPS", DataType.FP32, (3, 48, 160))], {"mode": "crop_boxes"}, inputs=inputs)
        )
