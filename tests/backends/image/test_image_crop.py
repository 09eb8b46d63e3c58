"""crop_regions (boxes and quadrilaterals) and the crop_boxes model mode."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from packserve.backends.image import crop_regions
from packserve.errors import InvalidArgumentError
from packserve.messages import InferRequest
from packserve.types import DataType
from tests.fakes.backends import RecordingTimer
from tests.fakes.image import cpu_instance, encode, image_request, output, photo, spec

IMAGE = photo(320, 240, seed=7)
CROP_INPUTS = [
    output("IMAGE", DataType.UINT8, (-1, -1, 3)),
    output("BOXES", DataType.FP32, (-1, -1)),
    output("IMAGE_META", DataType.FP32, (6,)),
]


def test_box_of_the_output_size_is_the_exact_slice() -> None:
    crops = crop_regions(IMAGE, np.array([[10, 20, 74, 52], [100, 50, 164, 82]]), (64, 32))
    assert crops.shape == (2, 32, 64, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], IMAGE[20:52, 10:74])
    np.testing.assert_array_equal(crops[1], IMAGE[50:82, 100:164])


def test_resized_box_matches_opencv_resize_of_the_slice() -> None:
    crops = crop_regions(IMAGE, np.array([[40, 30, 200, 190]]), (64, 64))
    expected = cv2.resize(IMAGE[30:190, 40:200], (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(crops[0].astype(int) - expected).max() <= 2  # fixed-point weights differ by a level
    area = crop_regions(IMAGE, np.array([[40, 30, 200, 190]]), (64, 64), interpolation="area")
    np.testing.assert_array_equal(
        area[0], cv2.resize(IMAGE[30:190, 40:200], (64, 64), interpolation=cv2.INTER_AREA)
    )


def test_outside_the_image_reads_pad_value() -> None:
    crops = crop_regions(IMAGE, np.array([[-20, -10, 20, 10]]), (40, 20), pad_value=7)
    assert (crops[0, :10] == 7).all() and (crops[0, :, :20] == 7).all()
    np.testing.assert_array_equal(crops[0, 10:, 20:], IMAGE[:10, :20])
    area = crop_regions(
        IMAGE,
        np.array([[-20, -10, 20, 10], [500, 500, 510, 510]]),
        (40, 20),
        interpolation="area",
        pad_value=7,
    )
    np.testing.assert_array_equal(area[0], crops[0])
    assert (area[1] == 7).all()


def test_quadrilateral_is_warped_upright() -> None:
    # A text line running bottom-to-top over x 10..50, y 20..40: corners TL, TR, BR, BL of the text.
    quad = np.array([[[10, 40], [10, 20], [50, 20], [50, 40]]], dtype=np.float32)
    crops = crop_regions(IMAGE, quad, (20, 40))
    assert np.abs(crops[0].astype(int) - np.rot90(IMAGE[20:40, 10:50], k=-1)).max() <= 1
    flat = crop_regions(IMAGE, quad.reshape(1, 8), (20, 40))
    np.testing.assert_array_equal(flat, crops)


def test_rotated_rectangle_quad_matches_rotating_the_image() -> None:
    center, angle = (160.0, 120.0), 30.0
    rotation = cv2.getRotationMatrix2D(center, angle, 1.0)  # rotates the image counterclockwise
    upright = cv2.warpAffine(IMAGE, rotation, (320, 240), flags=cv2.INTER_LINEAR)
    # The rectangle x 120..200, y 100..140 of `upright`, mapped back into the original image.
    inverse = cv2.invertAffineTransform(rotation)
    corners = np.array([[120, 100], [200, 100], [200, 140], [120, 140]], dtype=np.float64) - 0.5
    quad = (corners @ inverse[:, :2].T + inverse[:, 2]) + 0.5
    crops = crop_regions(IMAGE, quad[None], (80, 40))
    assert np.abs(crops[0].astype(int) - upright[100:140, 120:200]).mean() <= 3.0


@pytest.mark.parametrize("boxes", [np.zeros((2, 5)), np.array([[0, 0, np.nan, 4]]), np.zeros((4,))])
def test_malformed_boxes_raise(boxes: np.ndarray) -> None:
    with pytest.raises(ValueError, match="boxes"):
        crop_regions(IMAGE, boxes, (8, 8))


def crop_request(image: np.ndarray, boxes: np.ndarray, meta: np.ndarray | None = None) -> InferRequest:
    inputs = {"IMAGE": image[None], "BOXES": boxes.astype(np.float32)[None]}
    if meta is not None:
        inputs["IMAGE_META"] = meta.astype(np.float32)[None]
    return InferRequest(model_name="crops", inputs=inputs)


def test_detector_crop_classifier_cascade_through_two_models() -> None:
    pixels = photo(640, 480, seed=2)
    pixels[100:200, 300:500] = (10, 200, 30)  # a green region found by "the detector"
    decoder = cpu_instance(
        spec(
            [output("RAW", DataType.UINT8, (320, 320, 3)), output("RAW_meta", DataType.FP32, (6,))],
            {"RAW.op": "decoded"},
        )
    )
    decoded = decoder.execute([image_request(encode(pixels, "PNG"))], RecordingTimer())[0]
    assert isinstance(decoded, dict) and decoded["RAW_meta"][0].tolist() == [0.5, 0.5, 0, 0, 640, 480]
    cropper = cpu_instance(
        spec(
            [
                output("CROPS", DataType.FP32, (-1, 3, 32, 32)),
                output("CROPS_HWC", DataType.UINT8, (-1, 16, 16, 3)),
            ],
            {"mode": "crop_boxes", "CROPS.mean": "0.5", "CROPS.std": "0.5", "CROPS_HWC.layout": "NHWC"},
            inputs=CROP_INPUTS,
        )
    )
    boxes = np.array([[310, 110, 490, 190], [0, 0, 640, 480], [1000, 1000, 1100, 1100]])  # original pixels
    results = cropper.execute(
        [
            crop_request(decoded["RAW"][0], boxes, decoded["RAW_meta"][0]),
            crop_request(decoded["RAW"][0], np.zeros((0, 4))),
        ],
        RecordingTimer(),
    )
    out, empty = results
    assert isinstance(out, dict) and isinstance(empty, dict)
    assert out["CROPS"].shape == (1, 3, 3, 32, 32) and out["CROPS_HWC"].shape == (1, 3, 16, 16, 3)
    green = np.array([10, 200, 30]) / 255.0 * 2 - 1
    np.testing.assert_allclose(out["CROPS"][0, 0].mean(axis=(1, 2)), green, atol=0.02)
    np.testing.assert_array_equal(out["CROPS_HWC"][0, 2], 0)  # outside the image: padding
    whole = cv2.resize(decoded["RAW"][0][:240, :320], (16, 16), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out["CROPS_HWC"][0, 1].astype(int) - whole).mean() <= 4
    assert empty["CROPS"].shape == (1, 0, 3, 32, 32)


def test_crop_mode_bgr_image_and_errors() -> None:
    cropper = cpu_instance(
        spec(
            [output("CROPS", DataType.UINT8, (-1, 8, 8, 3))],
            {"mode": "crop_boxes", "image_color": "BGR", "CROPS.layout": "NHWC"},
            inputs=CROP_INPUTS,
        )
    )
    bgr = np.ascontiguousarray(IMAGE[..., ::-1])
    good = crop_request(bgr, np.array([[0, 0, 8, 8]]))
    nan = crop_request(bgr, np.array([[0, 0, np.nan, 8]]))
    wrong = crop_request(bgr, np.array([[0, 0, 8, 8]]))
    wrong.inputs["BOXES"] = wrong.inputs["BOXES"].astype(np.float64)
    bad_meta = crop_request(bgr, np.array([[0, 0, 8, 8]]), np.zeros(6))
    results = cropper.execute([good, nan, wrong, bad_meta], RecordingTimer())
    assert isinstance(results[0], dict)
    np.testing.assert_array_equal(results[0]["CROPS"][0, 0], IMAGE[:8, :8])
    assert isinstance(results[1], InvalidArgumentError) and "NaN" in str(results[1])
    assert isinstance(results[2], InvalidArgumentError) and "'BOXES' must be FP32" in str(results[2])
    assert isinstance(results[3], InvalidArgumentError) and "positive" in str(results[3])
