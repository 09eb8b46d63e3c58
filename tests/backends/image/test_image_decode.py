"""Decoding: formats, EXIF orientation, DCT-domain downscale, and the per-image failures."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from packserve.backends.image.decode import apply_orientation, decode_image, jpeg_orientation
from packserve.backends.image.params import DecodeOptions
from packserve.errors import InvalidArgumentError, ResourceExhaustedError
from tests.fakes.image import encode, jpeg, photo

OPTIONS = DecodeOptions()


def full_size(width: int, height: int) -> float:
    return 1.0


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def test_jpeg_matches_pillow() -> None:
    data = jpeg(320, 240)
    decoded = decode_image(data, OPTIONS, full_size)
    assert (decoded.source_width, decoded.source_height) == (320, 240)
    # Both are libjpeg(-turbo) with the same IDCT and upsampling: at most one level apart.
    assert np.abs(decoded.pixels.astype(int) - pillow_rgb(data)).max() <= 1


def test_dct_downscale_keeps_the_original_size() -> None:
    data = jpeg(1280, 720)
    decoded = decode_image(data, OPTIONS, lambda w, h: 0.3)
    # libjpeg-turbo scales by k/8: 3/8 is the smallest factor that keeps >= 0.3 of each side.
    assert decoded.pixels.shape == (270, 480, 3)
    assert (decoded.source_width, decoded.source_height) == (1280, 720)
    no_dct = decode_image(data, DecodeOptions(dct_scaling=False), lambda w, h: 0.3)
    assert no_dct.pixels.shape == (720, 1280, 3)
    assert decode_image(data, OPTIONS, lambda w, h: 0.6).pixels.shape == (720, 1280, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = photo(96, 64, seed=orientation)
    data = encode(pixels, "JPEG", quality=95, exif=exif.tobytes())
    assert jpeg_orientation(data) == orientation
    decoded = decode_image(data, OPTIONS, full_size)
    expected = pillow_rgb(data)
    assert decoded.pixels.shape == expected.shape
    assert (decoded.source_width, decoded.source_height) == (expected.shape[1], expected.shape[0])
    assert np.abs(decoded.pixels.astype(int) - expected).max() <= 1
    # The same rule on a PNG goes through Pillow and agrees with the JPEG path's apply_orientation.
    png = encode(pixels, "PNG", exif=exif.tobytes())
    np.testing.assert_array_equal(
        decode_image(png, OPTIONS, full_size).pixels, apply_orientation(pixels, orientation)
    )


def test_exif_orientation_can_be_ignored_and_survives_garbage_exif() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(photo(96, 64), "JPEG", exif=exif.tobytes())
    assert decode_image(data, DecodeOptions(exif_orientation=False), full_size).pixels.shape == (64, 96, 3)
    broken = data.replace(b"Exif\x00\x00MM", b"Exif\x00\x00XX").replace(b"Exif\x00\x00II", b"Exif\x00\x00XX")
    assert jpeg_orientation(broken) == 1
    assert jpeg_orientation(b"\xff\xd8\xff\xe1\x00") == 1


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_other_formats(fmt: str) -> None:
    pixels = photo(80, 60)
    options = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encode(pixels, fmt, **options), OPTIONS, full_size)
    assert decoded.pixels.shape == (60, 80, 3) and decoded.pixels.dtype == np.uint8
    if fmt != "GIF":  # GIF is palettized: lossy
        np.testing.assert_array_equal(decoded.pixels, pixels)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "JPEG"), ("L", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("CMYK", "JPEG")],
)
def test_color_modes_become_rgb(mode: str, fmt: str) -> None:
    source = Image.fromarray(photo(64, 48)).convert(mode)
    buffer = io.BytesIO()
    source.save(buffer, fmt)
    decoded = decode_image(buffer.getvalue(), OPTIONS, full_size)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert decoded.pixels.shape == (48, 64, 3)
    assert np.abs(decoded.pixels.astype(int) - expected).max() <= 1


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    wide = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    decoded = decode_image(encode(wide, "PNG"), OPTIONS, full_size)
    assert decoded.pixels[0, 0, 0] == 0 and decoded.pixels[-1, -1, 0] == 255
    assert np.all(decoded.pixels[..., 0] == decoded.pixels[..., 2])


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: a decompression bomb's first bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", InvalidArgumentError, "empty"),
        (b"definitely not an image", InvalidArgumentError, "not a supported image"),
        (b"\xff\xd8\xff\xe0garbage", InvalidArgumentError, "corrupt JPEG header"),
        (png_declaring(100_000, 100_000), ResourceExhaustedError, "exceeds (the )?limit"),
        (png_declaring(9_000, 9_000), ResourceExhaustedError, "exceeds (the )?limit"),
    ],
    ids=["empty", "text", "jpeg-header", "png-10G-pixels", "png-81M-pixels"],
)
def test_bad_data_errors(data: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        decode_image(data, OPTIONS, full_size)


def test_truncated_images_error() -> None:
    data = jpeg(320, 240)
    with pytest.raises(InvalidArgumentError, match="truncated"):
        decode_image(data[: len(data) // 2], OPTIONS, full_size)
    png = encode(photo(320, 240), "PNG")
    with pytest.raises(InvalidArgumentError, match="corrupt or truncated"):
        decode_image(png[: len(png) // 2], OPTIONS, full_size)


def test_jpeg_pixel_limit_checked_from_header() -> None:
    with pytest.raises(ResourceExhaustedError, match="320x240 = 76800 pixels"):
        decode_image(jpeg(320, 240), DecodeOptions(max_pixels=76_799), full_size)
