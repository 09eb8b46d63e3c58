"""Sample images for the demo client and tests: scikit-image's bundled photos and rendered text."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SAMPLE_TEXT = ("PACKSERVE 2025", "Hello vision stack")
PHOTOS = ("astronaut", "coffee", "chelsea")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVuSans from matplotlib when installed, else Pillow's bundled scalable default font."""
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def render_text(lines: Sequence[str] = SAMPLE_TEXT, size: int = 48) -> np.ndarray:
    """Black lines of text on white, RGB uint8 [H, W, 3]."""
    font = _font(size)
    width = 80 + max(int(font.getlength(line)) for line in lines)
    image = Image.new("RGB", (max(width, 320), 60 + 2 * size * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((40, 40 + 2 * size * row), line, fill="black", font=font)
    return np.asarray(image)


def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled RGB photos (astronaut has one face)."""
    from skimage import data

    image = getattr(data, name)()
    return np.asarray(image[..., :3], dtype=np.uint8)


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()
