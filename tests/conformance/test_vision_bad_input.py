"""Bad images sent to the served `vision_stack` get a clear 4xx naming the problem, the server
keeps serving, and 200 of them leave its memory where it was."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conformance.conformance_cases import astronaut
from tests.e2e.e2e_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TIMEOUT_S = 120
RSS_REQUESTS = 200
# Allocator noise of a Python server over 200 requests; a leak of one decoded image per request
# (even a 1x1 one carries buffers and error objects) would show as a steady climb well above it.
RSS_GROWTH_LIMIT_MB = 40


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid PNG header declaring width x height 8-bit grayscale pixels with a few bytes of
    data: a decoder that allocates before checking the size would need 1.6 GB."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (width + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


BAD_INPUTS = {
    "zero_bytes": (b"", "0 bytes"),
    "truncated_jpeg": (jpeg()[:3000], "truncated"),
    "one_pixel": (_png(np.zeros((1, 1, 3), np.uint8)), "min_size"),
    "100000x10": (_png(np.full((10, 100_000, 3), 255, np.uint8)), "max_aspect_ratio"),
    "decompression_bomb": (png_bomb(), "decompression bomb"),
    "over_max_pixels": (png_bomb(12_000, 12_000), "max_pixels"),
    "not_an_image": (b"GIF89a-but-not-really" * 10, "not a supported image"),
}


def post(server: LiveServer, data: bytes) -> requests.Response:
    return requests.post(f"{server.http_base}/v2/pipelines/vision_stack", data=data, timeout=TIMEOUT_S)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_image_gets_a_clear_4xx(vision_server: LiveServer, name: str) -> None:
    data, words = BAD_INPUTS[name]
    reply = post(vision_server, data)
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    assert words in reply.json()["error"], reply.text
    assert post(vision_server, jpeg()).status_code == 200  # still serving


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_bad_images_leak_nothing(vision_server: LiveServer) -> None:
    payloads = [data for data, _ in BAD_INPUTS.values()]
    for data in payloads * 4:  # warm every error path first
        post(vision_server, data)
    before = rss_mb(vision_server.process.pid)
    statuses = {post(vision_server, payloads[i % len(payloads)]).status_code for i in range(RSS_REQUESTS)}
    after = rss_mb(vision_server.process.pid)
    assert all(400 <= s < 500 for s in statuses), statuses
    assert after - before < RSS_GROWTH_LIMIT_MB, f"RSS {before:.0f} MB -> {after:.0f} MB"
    assert post(vision_server, jpeg()).status_code == 200
