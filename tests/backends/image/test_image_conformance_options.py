"""Image-backend options added for reference-pipeline conformance (issue 11): upscale limits,
Lanczos and antialiased bilinear resizing, alpha compositing, stretch + JPEG round trip for
center crops, and the min_size / max_aspect_ratio guards."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from packserve.backends.image import parse_plan
from packserve.backends.image.decode import decode_image
from packserve.backends.image.geometry import letterbox_geometry, shorter_side_geometry
from packserve.backends.image.params import DecodeOptions
from packserve.errors import ConfigError, InvalidArgumentError
from packserve.types import DataType
from tests.fakes.backends import RecordingTimer
from tests.fakes.image import cpu_instance, encode, image_request, output, photo, spec

DET = output("DET", DataType.FP32, (3, 64, 64))
DET_META = output("DET_meta", DataType.FP32, (6,))
CLS = output("CLS", DataType.UINT8, (24, 24, 3))


def run(outputs: list, parameters: dict[str, str], data: bytes) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    out = cpu_instance(spec(outputs, parameters)).execute([image_request(data)], RecordingTimer())[0]
    assert isinstance(out, dict), out
    return out


def test_upscale_limits_in_the_geometry() -> None:
    assert letterbox_geometry(32, 16, 640, 640).resize_width == 640
    tiny = letterbox_geometry(32, 16, 640, 640, max_upscale=1.0)
    assert (tiny.resize_width, tiny.resize_height, tiny.scale_x) == (32, 16, 1.0)
    assert letterbox_geometry(32, 16, 640, 640, max_upscale=2.5).resize_width == 80
    assert letterbox_geometry(3200, 1600, 640, 640, max_upscale=1.0).resize_width == 640  # shrinks
    assert shorter_side_geometry(20, 10, 800, 800, 400, max_upscale=2.0).resize_height == 20


def test_a_thumbnail_stays_a_thumbnail_with_allow_upscale_false() -> None:
    parameters = {"DET.op": "letterbox", "DET.allow_upscale": "false", "DET.align": "top_left"}
    parameters |= {"DET.pad_value": "0", "DET.scale": "1"}
    out = run([DET, DET_META], parameters, encode(np.full((8, 16, 3), 200, np.uint8), "PNG"))
    assert out["DET_meta"][0].tolist() == [1, 1, 0, 0, 16, 8]
    assert np.all(out["DET"][0][:, :8, :16] == 200) and np.all(out["DET"][0][:, 8:, :] == 0)
    plan = parse_plan(spec([DET], {"DET.op": "letterbox", "DET.max_upscale": "3/2"}))
    assert plan.pipelines[0].max_upscale == 1.5


@pytest.mark.parametrize(
    "parameters, words",
    [
        ({"DET.op": "resize", "DET.allow_upscale": "false"}, "letterbox and shorter_side only"),
        ({"DET.op": "letterbox", "DET.max_upscale": "0.5"}, ">= 1"),
        ({"DET.op": "letterbox", "DET.allow_upscale": "no", "DET.max_upscale": "2"}, "not both"),
        ({"DET.op": "letterbox", "DET.stretch": "true"}, "center_crop only"),
        ({"DET.op": "letterbox", "DET.interpolation": "sinc"}, "lanczos"),
        ({"DET.op": "letterbox", "DET.jpeg_quality": "101"}, "[0, 100]"),
        ({"DET.op": "letterbox", "alpha_background": "white"}, "integer"),
        ({"DET.op": "letterbox", "max_aspect_ratio": "0.5"}, ">= 1"),
    ],
)
def test_bad_option_values_are_config_errors(parameters: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match="prep") as error:
        parse_plan(spec([DET], parameters))
    assert words in str(error.value)


def test_lanczos_and_antialiased_bilinear_match_their_references() -> None:
    import cv2

    pixels = photo(200, 120, seed=5)
    data = encode(pixels, "PNG")
    small = output("S", DataType.UINT8, (30, 50, 3))
    nhwc = {"S.op": "resize", "S.layout": "NHWC"}
    lanczos = run([small], nhwc | {"S.interpolation": "lanczos"}, data)["S"][0]
    assert np.array_equal(lanczos, cv2.resize(pixels, (50, 30), interpolation=cv2.INTER_LANCZOS4))
    smooth = run([small], nhwc | {"S.interpolation": "linear_antialias"}, data)["S"][0]
    pil = np.asarray(Image.fromarray(pixels).resize((50, 30), Image.Resampling.BILINEAR))
    assert np.array_equal(smooth, pil)


def rgba_png(hidden: int) -> bytes:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = hidden
    rgba[:2, :, 3] = 0  # transparent top half
    rgba[2:, :, :3], rgba[2:, :, 3] = 50, 255  # opaque bottom half
    rgba[3, 0] = (0, 0, 0, 128)  # half-transparent black
    return encode(rgba, "PNG")


def test_alpha_is_composited_on_white_whatever_colour_it_hides() -> None:
    options = DecodeOptions()
    for hidden in (0, 77):
        pixels = decode_image(rgba_png(hidden), options, lambda w, h: 1.0).pixels
        assert np.all(pixels[:2] == 255) and np.all(pixels[2, :] == 50)
        assert pixels[3, 0].tolist() == [127, 127, 127]
    dropped = decode_image(rgba_png(77), DecodeOptions(alpha_background=None), lambda w, h: 1.0).pixels
    assert np.all(dropped[:2] == 77)
    palette = Image.fromarray(np.zeros((4, 4), np.uint8), "P")
    palette.info["transparency"] = 0
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    assert np.all(decode_image(buffer.getvalue(), options, lambda w, h: 1.0).pixels == 255)


def test_stretch_squashes_before_the_center_crop_and_jpeg_round_trip() -> None:
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, :100], pixels[:, 100:200], pixels[:, 200:] = 0, 128, 255
    data = encode(pixels, "PNG")
    keys = {"CLS.op": "center_crop", "CLS.resize_shorter": "32", "CLS.interpolation": "nearest"}
    keys |= {"CLS.layout": "NHWC"}
    kept = run([CLS], keys, data)["CLS"][0]
    squashed = run([CLS], keys | {"CLS.stretch": "true"}, data)["CLS"][0]
    assert np.all(kept == 128)  # aspect kept: the crop sees the middle third only
    assert kept.shape == squashed.shape and squashed[0, 0, 0] == 0 and squashed[0, -1, 0] == 255
    trip = run([CLS], keys | {"CLS.stretch": "true", "CLS.jpeg_quality": "75"}, data)["CLS"][0]
    assert 0 < np.abs(trip.astype(int) - squashed.astype(int)).max() < 40  # lossy, but the same image


@pytest.mark.parametrize(
    "size, words", [((1, 1), "min_size"), ((9, 4), "min_size"), ((10, 1500), "max_aspect_ratio")]
)
def test_tiny_and_elongated_images_are_rejected(size: tuple[int, int], words: str) -> None:
    parameters = {"DET.op": "letterbox", "min_size": "8", "max_aspect_ratio": "100"}
    data = encode(np.zeros((size[0], size[1], 3), np.uint8), "PNG")
    out = cpu_instance(spec([DET], parameters)).execute([image_request(data)], RecordingTimer())[0]
    assert isinstance(out, InvalidArgumentError) and words in str(out)
    ok = cpu_instance(spec([DET], parameters)).execute(
        [image_request(encode(np.zeros((8, 800, 3), np.uint8), "PNG"))], RecordingTimer()
    )[0]
    assert isinstance(ok, dict)
