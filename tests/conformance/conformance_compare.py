"""Served answers vs reference answers, per model, with the rules of issue 11:

faces        same count, and every served box matched to a reference box with IoU >= 0.85
landmarks    the served O-Net points of each served face vs MTCNN's own full pipeline on the
             same face (IoU >= 0.5): mean point distance <= LANDMARK_TOLERANCE x the face's
             width (MTCNN's detector may also find faces RetinaFace does not: not compared)
text         the same lines, spaces ignored; where one side splits a line at word gaps that the
             other keeps whole, the same characters with every line of one side inside a line
             of the other (reported as "split differently")
content      |served nsfw - reference nsfw| <= NSFW_TOLERANCE
orientation  the same label
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import requests

from tests.conformance.conformance_refs import Reference

FACE_IOU = 0.85
LANDMARK_TOLERANCE = 0.1
NSFW_TOLERANCE = 0.01
MODELS = ("faces", "landmarks", "text", "content", "orientation")
REQUEST_TIMEOUT_S = 300


@dataclass
class Served:
    faces: np.ndarray
    landmarks: np.ndarray
    text: list[str]
    nsfw: float
    orientation: str


def serve(http_base: str, data: bytes) -> Served:
    reply = requests.post(f"{http_base}/v2/pipelines/vision_stack", data=data, timeout=REQUEST_TIMEOUT_S)
    assert reply.status_code == 200, reply.text
    out: dict[str, Any] = reply.json()["outputs"]
    labels = [str(v) for v in np.asarray(out["CONTENT_LABELS"], dtype=object).reshape(-1)]
    scores = np.asarray(out["CONTENT_SCORES"], np.float32).reshape(-1)
    return Served(
        faces=np.asarray(out["FACE_BOXES"], np.float32).reshape(-1, 4),
        landmarks=np.asarray(out["FACE_LANDMARKS"], np.float32).reshape(-1, 10),
        text=[str(t) for t in np.asarray(out["TEXT"], dtype=object).reshape(-1)],
        nsfw=float(scores[labels.index("nsfw")]),
        # ORIENTATION: the name before issue 11 (lets the table script run against older trees)
        orientation=str(
            np.asarray(out.get("DOCUMENT_ORIENTATION", out.get("ORIENTATION")), dtype=object).reshape(-1)[0]
        ),
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match(served: np.ndarray, reference: np.ndarray) -> list[tuple[int, int, float]]:
    """Greedy best-IoU pairs (served index, reference index, IoU)."""
    pairs = sorted(
        ((iou(s, r), i, j) for i, s in enumerate(served) for j, r in enumerate(reference)), reverse=True
    )
    used_s: set[int] = set()
    used_r: set[int] = set()
    out = []
    for value, i, j in pairs:
        if i not in used_s and j not in used_r and value > 0:
            used_s.add(i)
            used_r.add(j)
            out.append((i, j, value))
    return out


def compare_faces(served: Served, ref: Reference) -> tuple[bool, str]:
    pairs = match(served.faces, ref.faces)
    worst = min((p[2] for p in pairs), default=1.0)
    ok = len(served.faces) == len(ref.faces) == len(pairs) and worst >= FACE_IOU
    return ok, f"{len(served.faces)} vs {len(ref.faces)} faces, min IoU {worst:.2f}"


def compare_landmarks(served: Served, ref: Reference) -> tuple[bool, str]:
    if len(served.faces) == 0:
        return True, "no faces"
    pairs = [p for p in match(served.faces, ref.mtcnn_boxes) if p[2] >= 0.5]
    if not pairs:
        return False, f"no served face matches an MTCNN face ({len(served.faces)} vs {len(ref.mtcnn_boxes)})"
    errors = []
    for i, j, _ in pairs:
        width = served.faces[i, 2] - served.faces[i, 0]
        distance = np.linalg.norm(
            served.landmarks[i].reshape(5, 2) - ref.mtcnn_landmarks[j].reshape(5, 2), axis=1
        ).mean()
        errors.append(float(distance / max(width, 1.0)))
    worst = max(errors)
    return worst <= LANDMARK_TOLERANCE, f"{len(pairs)} face(s), worst mean error {worst:.3f} x face width"


def _lines(texts: list[str]) -> list[str]:
    return sorted("".join(t.split()) for t in texts if "".join(t.split()))


def _inside(parts: list[str], wholes: list[str]) -> bool:
    return all(any(part in whole for whole in wholes) for part in parts)


def compare_text(served: Served, ref: Reference) -> tuple[bool, str]:
    a, b = _lines(served.text), _lines(ref.text)
    detail = f"served {served.text} / reference {ref.text}"
    if a == b:
        return True, detail
    same_characters = sorted("".join(a)) == sorted("".join(b))
    if same_characters and (_inside(a, b) or _inside(b, a)):
        return True, "split differently: " + detail
    return False, detail


def compare_content(served: Served, ref: Reference) -> tuple[bool, str]:
    diff = abs(served.nsfw - ref.nsfw)
    return diff <= NSFW_TOLERANCE, f"nsfw {served.nsfw:.4f} vs {ref.nsfw:.4f} (diff {diff:.4f})"


def compare_orientation(served: Served, ref: Reference) -> tuple[bool, str]:
    return served.orientation == ref.orientation, f"{served.orientation} vs {ref.orientation}"


COMPARERS = {
    "faces": compare_faces,
    "landmarks": compare_landmarks,
    "text": compare_text,
    "content": compare_content,
    "orientation": compare_orientation,
}


def compare(served: Served, ref: Reference) -> dict[str, tuple[bool, str]]:
    return {model: check(served, ref) for model, check in COMPARERS.items()}
