"""ImageModel on CPU instances, through execute() with batches as the server runs it.

Tolerances against a plain Pillow reference (decode, bilinear resize, paste, /255):
- no resampling or upscaling: max abs diff <= 2/255 (decoders agree to one level, resize to one);
- with a DCT-domain downscale (1280x720 -> 640): mean abs diff <= 1/255 and 99th percentile
  <= 6/255; single pixels on hard edges differ more because DCT scaling is a box filter where
  Pillow's antialiased bilinear is a triangle filter.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import packserve.backends.image.model as image_model
from packserve.backends.image import map_boxes_to_original
from packserve.errors import InvalidArgumentError, ResourceExhaustedError
from packserve.types import DataType
from tests.fakes.backends import RecordingTimer
from tests.fakes.image import cpu_instance, encode, image_request, jpeg, output, photo, spec

BILINEAR = Image.Resampling.BILINEAR
DET = output("DET", DataType.FP32, (3, 640, 640))
DET_META = output("DET_meta", DataType.FP32, (6,))


def pillow_letterbox(data: bytes, meta: np.ndarray) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = int(meta[4]), int(meta[5])
    resized = image.resize((round(width * float(meta[0])), round(height * float(meta[1]))), BILINEAR)
    canvas = Image.new("RGB", (640, 640), (114, 114, 114))
    canvas.paste(resized, (int(meta[2]), int(meta[3])))
    return np.asarray(canvas).transpose(2, 0, 1) / 255.0


@pytest.mark.parametrize(
    ("size", "mean_tol", "p99_tol", "max_tol"),
    [
        ((640, 480), 0.5, 2, 2),
        ((320, 200), 0.5, 2, 2),
        ((1280, 720), 1, 6, 255),
    ],
)
def test_letterbox_matches_pillow_reference(
    size: tuple[int, int], mean_tol: float, p99_tol: float, max_tol: float
) -> None:
    data = jpeg(*size)
    result = cpu_instance(spec([DET, DET_META], {"DET.op": "letterbox"})).execute(
        [image_request(data)], RecordingTimer()
    )
    out = result[0]
    assert isinstance(out, dict) and out["DET"].shape == (1, 3, 640, 640) and out["DET"].dtype == np.float32
    diff = np.abs(out["DET"][0] - pillow_letterbox(data, out["DET_meta"][0])) * 255
    assert diff.mean() <= mean_tol and np.percentile(diff, 99) <= p99_tol and diff.max() <= max_tol + 1e-3


def test_several_outputs_from_one_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = image_model.decode_image

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(image_model, "decode_image", counting)
    model_spec = spec(
        [
            DET,
            DET_META,
            output("CLS", DataType.FP32, (3, 224, 224)),
            output("RAW", DataType.UINT8, (480, 640, 3)),
            output("RAW_meta", DataType.FP32, (6,)),
        ],
        {
            "DET.op": "letterbox",
            "CLS.op": "center_crop",
            "RAW.op": "decoded",
            "CLS.mean": "0.5",
            "CLS.std": "0.25",
        },
    )
    pixels = photo(400, 300)
    data = encode(pixels, "PNG")
    timer = RecordingTimer()
    out = cpu_instance(model_spec).execute([image_request(data, data)], timer)[0]
    assert len(calls) == 2 and timer.calls == ["inputs_ready", "infer_done"]
    assert isinstance(out, dict) and set(out) == {"DET", "DET_meta", "CLS", "RAW", "RAW_meta"}
    raw = out["RAW"][1]
    np.testing.assert_array_equal(raw[:300, :400], pixels)
    assert not raw[300:].any() and not raw[:, 400:].any()
    assert out["RAW_meta"][1].tolist() == [1, 1, 0, 0, 400, 300]
    # center_crop: shorter side 300 -> 256, crop 224 from the middle; then (x/255 - 0.5) / 0.25.
    resized = np.asarray(Image.fromarray(pixels).resize((341, 256), BILINEAR))
    expected = (resized[16:240, 58:282].transpose(2, 0, 1) / 255.0 - 0.5) / 0.25
    assert np.abs(out["CLS"][0] - expected).mean() * 0.25 * 255 <= 1.0


def test_fp16_nhwc_bgr_and_uint8_options() -> None:
    reference = spec([DET], {"DET.op": "letterbox", "DET.mean": "0.1,0.2,0.3", "DET.std": "0.5,0.6,0.7"})
    variant = spec(
        [output("DET", DataType.FP16, (640, 640, 3)), output("PIX", DataType.UINT8, (3, 320, 320))],
        {
            "DET.op": "letterbox",
            "DET.layout": "NHWC",
            "color": "BGR",
            "DET.mean": "0.3,0.2,0.1",
            "DET.std": "0.7,0.6,0.5",
            "PIX.op": "resize",
        },
    )
    data = jpeg(500, 375)
    ref = cpu_instance(reference).execute([image_request(data)], RecordingTimer())[0]
    out = cpu_instance(variant).execute([image_request(data)], RecordingTimer())[0]
    assert isinstance(ref, dict) and isinstance(out, dict)
    assert out["DET"].dtype == np.float16 and out["PIX"].dtype == np.uint8
    expected = ref["DET"][0][::-1].transpose(1, 2, 0)  # RGB NCHW -> BGR NHWC
    np.testing.assert_allclose(out["DET"][0].astype(np.float32), expected, atol=2e-3, rtol=1e-3)
    resized = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((320, 320), BILINEAR))
    assert np.abs(out["PIX"][0][::-1].transpose(1, 2, 0).astype(int) - resized).mean() <= 1.0


def png_bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 6_000, 6_000, 8, 2, 0, 0, 0)  # 36 MP > max_pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 99))
        + chunk(b"IEND", b"")
    )


def test_bad_images_fail_only_their_own_request() -> None:
    good = jpeg(320, 240)
    bad = {
        "corrupt": (good[:200] + bytes(300) + good[500:], InvalidArgumentError),
        "truncated": (good[: len(good) // 2], InvalidArgumentError),
        "empty": (b"", InvalidArgumentError),
        "text": (b"<html>not an image</html>", InvalidArgumentError),
        "bomb": (png_bomb(), ResourceExhaustedError),
    }
    requests = [image_request(good)] + [image_request(data) for data, _ in bad.values()]
    requests.append(image_request(good, bad["truncated"][0]))  # one bad row fails its whole request
    requests.append(image_request(good, good))
    instance = cpu_instance(spec([DET, DET_META], {"DET.op": "letterbox", "max_pixels": "20000000"}))
    results = instance.execute(requests, RecordingTimer())
    solo = instance.execute([image_request(good)], RecordingTimer())[0]
    assert isinstance(results[0], dict) and isinstance(solo, dict)
    np.testing.assert_array_equal(results[0]["DET"], solo["DET"])
    for result, (name, (_, error)) in zip(results[1:6], bad.items(), strict=True):
        assert isinstance(result, error), name
        assert "image model 'prep': input 'IMAGE' row" in str(result)
    assert isinstance(results[6], InvalidArgumentError) and "row 7" in str(results[6])
    last = results[7]
    assert isinstance(last, dict) and last["DET"].shape == (2, 3, 640, 640)
    np.testing.assert_array_equal(last["DET"][1], solo["DET"][0])


def test_malformed_input_tensor_fails_its_request() -> None:
    instance = cpu_instance(spec([DET], {"DET.op": "letterbox"}))
    wrong_shape = image_request(jpeg(64, 64))
    wrong_shape.inputs["IMAGE"] = np.array([[b"a", b"b"]], dtype=object)
    wrong_type = image_request(jpeg(64, 64))
    wrong_type.inputs["IMAGE"] = np.array([[42]], dtype=object)
    results = instance.execute([wrong_shape, wrong_type, image_request(jpeg(64, 64))], RecordingTimer())
    assert isinstance(results[0], InvalidArgumentError) and "shape [batch, 1]" in str(results[0])
    assert isinstance(results[1], InvalidArgumentError) and "encoded image bytes" in str(results[1])
    assert isinstance(results[2], dict)


def test_requested_outputs_and_non_batching_model() -> None:
    model_spec = spec(
        [DET, DET_META, output("CLS", DataType.FP32, (3, 224, 224))],
        {"DET.op": "letterbox", "CLS.op": "center_crop"},
        max_batch_size=0,
    )
    out = cpu_instance(model_spec).execute(
        [image_request(jpeg(800, 600), outputs=["DET_meta"], batching=False)], RecordingTimer()
    )[0]
    assert isinstance(out, dict) and list(out) == ["DET_meta"]
    assert out["DET_meta"].tolist() == [0.800000011920929, 0.800000011920929, 0, 80, 800, 600]


def test_a_box_drawn_on_the_photo_maps_back_through_meta() -> None:
    pixels = photo(1280, 720, seed=3) // 2
    pixels[200:400, 300:700] = (255, 255, 255)  # box x 300..700, y 200..400
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated: the upright image is what the meta describes
    stored = np.ascontiguousarray(np.rot90(pixels, k=-1))
    out = cpu_instance(spec([DET, DET_META], {"DET.op": "letterbox"})).execute(
        [image_request(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))], RecordingTimer()
    )[0]
    assert isinstance(out, dict)
    assert out["DET_meta"][0][4:].tolist() == [1280, 720]
    ys, xs = np.nonzero(out["DET"][0].min(axis=0) > 0.9)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    np.testing.assert_allclose(
        map_boxes_to_original(found, out["DET_meta"][0]), [[300, 200, 700, 400]], atol=2.5
    )
