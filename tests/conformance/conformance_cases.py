"""The images of the conformance suite, generated here: photos from scikit-image's bundled data,
rendered text and composites, encoded in the formats and layouts users send.

Each `Case` carries the encoded file and `upright`, the RGB pixels a correct decoder must produce
(EXIF applied, alpha composited on white, CMYK converted): references whose own loader gets a
file wrong are compared on `upright` instead (see conformance_refs.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from packserve.demo import samples

# What a case exercises, for the agreement table.
FACES, TEXT = "faces", "text"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    upright: np.ndarray  # RGB uint8 [H, W, 3], what the file shows
    about: str  # one line for the agreement table
    kinds: frozenset[str] = frozenset()  # FACES / TEXT when the image holds them


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    """The pixels of a lossy file as a careful decoder sees them (upright RGB, via Pillow)."""
    from PIL import ImageOps

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))


@cache
def astronaut() -> np.ndarray:
    return samples.photo("astronaut")


@cache
def background(width: int, height: int) -> np.ndarray:
    """A face-free photographic background: scikit-image's coffee cup, resized."""
    return _resize(samples.photo("coffee"), width, height)


def group_photo(width: int, height: int, face_px: int, count: int) -> np.ndarray:
    """`count` copies of the astronaut's head and shoulders with faces about `face_px` wide, on a
    background photo: the "small faces in an ordinary photo" case."""
    portrait = astronaut()[20:300, 110:330]  # head and shoulders; the face is ~100 px wide
    scale = face_px / 100
    tile = _resize(portrait, round(portrait.shape[1] * scale), round(portrait.shape[0] * scale))
    canvas = background(width, height).copy()
    th, tw = tile.shape[:2]
    step = width // (count + 1)
    for index in range(count):
        x = step * (index + 1) - tw // 2
        y = height // 2 - th // 2
        canvas[y : y + th, x : x + tw] = tile
    return canvas


def text_image(lines: tuple[str, ...], size: int = 48) -> np.ndarray:
    return samples.render_text(lines, size=size)


def banner(text: str, width: int, height: int, size: int) -> np.ndarray:
    """One line of text on a wide white strip (a shop banner, a web header)."""
    from PIL import ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((size, (height - size) // 2), text, fill="black", font=samples._font(size))
    return np.asarray(image)


def _jpeg(pixels: np.ndarray, **options: object) -> tuple[bytes, np.ndarray]:
    data = _save(Image.fromarray(pixels), "JPEG", quality=92, **options)
    return data, _decoded(data)


# EXIF orientation -> how the stored pixels relate to the upright image (PIL transpose methods
# that turn the upright image into the stored one).
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif_jpeg(pixels: np.ndarray, orientation: int) -> tuple[bytes, np.ndarray]:
    upright = Image.fromarray(pixels)
    method = _STORE[orientation]
    stored = upright if method is None else upright.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(stored, "JPEG", quality=92, exif=exif.tobytes())
    return data, _decoded(data)


def rgba_png(pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The photo inside a transparent frame whose hidden colour is black (alpha 0), plus a
    half-transparent band: a PNG screenshot/sticker. Correct pixels: composited on white."""
    height, width = pixels.shape[:2]
    alpha = np.full((height, width), 255, np.uint8)
    border = max(4, width // 8)
    alpha[:border], alpha[-border:], alpha[:, :border], alpha[:, -border:] = 0, 0, 0, 0
    alpha[height // 2 : height // 2 + border, border:-border] = 128
    rgb = pixels.copy()
    rgb[alpha == 0] = 0  # hidden colour: what a decoder that drops alpha shows
    rgba = np.dstack([rgb, alpha])
    data = _save(Image.fromarray(rgba, "RGBA"), "PNG")
    a = alpha[..., None].astype(np.uint16)
    upright = ((rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    return data, upright


def cmyk_jpeg(pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    data = _save(Image.fromarray(pixels).convert("CMYK"), "JPEG", quality=95)
    return data, _decoded(data)


def palette_png(pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    image = Image.fromarray(pixels).quantize(256)
    return _save(image, "PNG"), np.asarray(image.convert("RGB"))


def gray_jpeg(pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    data = _save(Image.fromarray(pixels).convert("L"), "JPEG", quality=92)
    return data, _decoded(data)


def webp(pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    data = _save(Image.fromarray(pixels), "WEBP", quality=90)
    return data, _decoded(data)


def png(pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    return _save(Image.fromarray(pixels), "PNG"), pixels


SAMPLE_LINES = ("PACKSERVE 2025", "Hello vision stack")
LONG_LINE = ("Brass pipe fittings, valves and plumbing supplies for every room of the house",)


def _case(name: str, about: str, made: tuple[bytes, np.ndarray], *kinds: str) -> Case:
    return Case(name, made[0], made[1], about, frozenset(kinds))


def _builders() -> list[Callable[[], Case]]:
    face, text = FACES, TEXT
    return [
        lambda: _case("astronaut_jpeg", "photo 512x512, one face, JPEG", _jpeg(astronaut()), face),
        lambda: _case(
            "astronaut_progressive",
            "same photo, progressive JPEG",
            _jpeg(astronaut(), progressive=True),
            face,
        ),
        lambda: _case("astronaut_webp", "same photo, WebP", webp(astronaut()), face),
        lambda: _case("astronaut_gray", "grayscale JPEG (1 channel)", gray_jpeg(astronaut()), face),
        lambda: _case("astronaut_cmyk", "CMYK JPEG (Adobe, inverted)", cmyk_jpeg(astronaut()), face),
        lambda: _case("astronaut_rgba", "RGBA PNG, black under alpha 0", rgba_png(astronaut()), face),
        lambda: _case("astronaut_palette", "palette (P mode) PNG", palette_png(astronaut()), face),
        *[
            (lambda o=o: _case(f"exif_{o}", f"EXIF orientation {o}", exif_jpeg(astronaut(), o), face))
            for o in range(1, 9)
        ],
        lambda: _case(
            "portrait_2400",
            "2400x2400 portrait, 1.5x the 1600 px decode cap",
            _jpeg(_resize(astronaut(), 2400, 2400)),
            face,
        ),
        lambda: _case(
            "group_1280_small_faces",
            "1280x960 group photo, four ~40 px faces",
            _jpeg(group_photo(1280, 960, 40, 4)),
            face,
        ),
        lambda: _case(
            "group_1600_small_faces",
            "1600x1200 group photo, four ~44 px faces",
            _jpeg(group_photo(1600, 1200, 44, 4)),
            face,
        ),
        lambda: _case("thumbnail_32", "32x32 thumbnail of the photo", png(_resize(astronaut(), 32, 32))),
        lambda: _case("thumbnail_64", "64x64 thumbnail of the photo", png(_resize(astronaut(), 64, 64))),
        lambda: _case("wide_4000x600", "4000x600 photo strip (wide)", _jpeg(background(4000, 600))),
        lambda: _case("tall_600x4000", "600x4000 photo strip (tall)", _jpeg(background(600, 4000))),
        lambda: _case("text_page", "rendered text, two lines, PNG", png(text_image(SAMPLE_LINES)), text),
        lambda: _case(
            "text_long_line",
            "one 77-character line (crop wider than 320 px at height 48)",
            png(text_image(LONG_LINE, size=40)),
            text,
        ),
        lambda: _case(
            "banner_2400",
            "2400x600 banner, 1.5x the 1600 px decode cap",
            png(banner("Grand opening sale this weekend", 2400, 600, 100)),
            text,
        ),
        *[
            (
                lambda r=r: _case(
                    f"text_rot{r}",
                    f"rendered text page rotated {r} degrees",
                    png(np.ascontiguousarray(np.rot90(text_image(SAMPLE_LINES), k=r // 90))),
                    text,
                )
            )
            for r in (90, 180, 270)
        ],
    ]


@cache
def all_cases() -> tuple[Case, ...]:
    return tuple(build() for build in _builders())


def case_names() -> list[str]:
    return [case.name for case in all_cases()]


def by_name(name: str) -> Case:
    return next(case for case in all_cases() if case.name == name)
