"""Text ops of a PP-OCR style pipeline: DB probability map -> quadrilaterals, text-line angle fix,
CTC greedy decoding with a character dictionary.

Quadrilaterals are FP32 [N, 8]: (x1, y1, ..., x4, y4) clockwise from the corner that is the
top-left of the text as it should be read, so cropping the quad with a perspective warp to an
upright rectangle yields a readable line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import cv2
import numpy as np

from packserve.backends.postprocess.detection import drop_unit_batch, read_transform
from packserve.backends.postprocess.op import OpContext, PostprocessOp
from packserve.errors import ConfigError, InvalidArgumentError


def ordered_rect_corners(rect: tuple[tuple[float, float], tuple[float, float], float]) -> np.ndarray:
    """The 4 corners of a rotated rect as [tl, tr, br, bl] (image axes, y down)."""
    points = cv2.boxPoints(rect)
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def region_score(probability: np.ndarray, corners: np.ndarray) -> float:
    """Mean probability inside the quadrilateral (DB's "fast" box score)."""
    height, width = probability.shape
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [width - 1, height - 1])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int), 0, [width - 1, height - 1])
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(corners - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(probability[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def unclip_rect(
    rect: tuple[tuple[float, float], tuple[float, float], float], ratio: float
) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Grow a rotated rect by DB's unclip distance (area * ratio / perimeter) on every side.

    DB shrinks text regions during training by that distance; for a rectangle, offsetting the
    polygon and taking the minimum-area rect again is exactly this growth of both sides."""
    (cx, cy), (w, h), angle = rect
    distance = (w * h) * ratio / max(2.0 * (w + h), 1e-6)
    return (cx, cy), (w + 2 * distance, h + 2 * distance), angle


class DbTextBoxesOp(PostprocessOp):
    """PROB_MAP [1,1,H,W] (DB text probability), TRANSFORM [6] -> QUADS [N,8], SCORES [N], original
    pixels, sorted in reading order (top to bottom, then left to right).

    Parameters: thresh (0.3), box_thresh (0.5), unclip_ratio (1.6), max_candidates (1000),
    min_size (3), dilate ("true"), vertical_ratio (1.5: taller lines are rotated to read
    horizontally, as PP-OCR does), min_original_size (0: off; rapidocr drops boxes whose side is
    <= 3 px in the original image, which removes specks of an upscaled thumbnail)."""

    name = "db_text_boxes"
    inputs = ("PROB_MAP",)
    optional_inputs = ("TRANSFORM",)
    outputs = ("QUADS", "SCORES")

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.thresh = context.number("thresh", 0.3)
        self.box_thresh = context.number("box_thresh", 0.5)
        self.unclip_ratio = context.number("unclip_ratio", 1.6)
        self.max_candidates = context.integer("max_candidates", 1000)
        self.min_size = context.number("min_size", 3)
        self.dilate = context.flag("dilate", True)
        self.vertical_ratio = context.number("vertical_ratio", 1.5)
        self.min_original_size = context.number("min_original_size", 0)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        where = f"model '{self.context.model}' input 'PROB_MAP'"
        probability = drop_unit_batch(self.require(inputs, "PROB_MAP"), 2, where).astype(np.float32)
        mask = (probability > self.thresh).astype(np.uint8)
        if self.dilate:
            mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        quads, scores = [], []
        for contour in contours[: self.max_candidates]:
            rect = cv2.minAreaRect(contour)
            if min(rect[1]) < self.min_size:
                continue
            score = region_score(probability, ordered_rect_corners(rect))
            if score < self.box_thresh:
                continue
            grown = unclip_rect(rect, self.unclip_ratio)
            if min(grown[1]) < self.min_size + 2:
                continue
            quads.append(ordered_rect_corners(grown))
            scores.append(score)
        height, width = probability.shape
        transform = read_transform(self, inputs, (width, height))
        if not quads:
            return {"QUADS": np.zeros((0, 8), np.float32), "SCORES": np.zeros((0,), np.float32)}
        corners = transform.points_to_original(np.stack(quads).reshape(-1, 8)).reshape(-1, 4, 2)
        corners = np.stack([self.upright(quad) for quad in corners])
        if self.min_original_size > 0:
            widths = np.linalg.norm(corners[:, 0] - corners[:, 1], axis=1)
            heights = np.linalg.norm(corners[:, 0] - corners[:, 3], axis=1)
            sides = np.stack([widths, heights])
            big = np.all(np.floor(sides) > self.min_original_size, axis=0)
            corners, scores = corners[big], [score for score, keep in zip(scores, big, strict=True) if keep]
            if not len(corners):
                return {"QUADS": np.zeros((0, 8), np.float32), "SCORES": np.zeros((0,), np.float32)}
        order = np.lexsort((corners[:, 0, 0], np.round(corners[:, 0, 1] / 10)))
        return {
            "QUADS": corners[order].reshape(-1, 8).astype(np.float32),
            "SCORES": np.asarray(scores, dtype=np.float32)[order],
        }

    def upright(self, quad: np.ndarray) -> np.ndarray:
        """Start a tall quad at its top-right corner: the crop then comes out rotated 90 degrees
        counter-clockwise, which is how PP-OCR reads vertical lines."""
        width = np.linalg.norm(quad[1] - quad[0])
        height = np.linalg.norm(quad[3] - quad[0])
        if width > 0 and height / width >= self.vertical_ratio:
            return np.roll(quad, -1, axis=0)
        return quad


class TextAngleFixOp(PostprocessOp):
    """QUADS [N,8] and ANGLE_PROBS [N,2] (text-line classifier: 0 and 180 degrees) -> QUADS with
    upside-down lines' corners rotated by two places (the crop turns 180 degrees) and ANGLES [N]
    (INT32, 0 or 180). Parameter: threshold (0.9, PP-OCR's cls_thresh)."""

    name = "text_angle_fix"
    inputs = ("QUADS", "ANGLE_PROBS")
    outputs = ("QUADS", "ANGLES")

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.threshold = context.number("threshold", 0.9)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        quads = self.require(inputs, "QUADS", (8,)).reshape(-1, 4, 2).astype(np.float32)
        probs = self.require(inputs, "ANGLE_PROBS", (2,)).reshape(-1, 2)
        if len(probs) != len(quads):
            raise InvalidArgumentError(
                f"model '{self.context.model}': {len(quads)} QUADS but {len(probs)} ANGLE_PROBS rows"
            )
        flipped = (np.argmax(probs, axis=1) == 1) & (probs[:, 1] > self.threshold)
        fixed = np.where(flipped[:, None, None], np.roll(quads, 2, axis=1), quads)
        return {
            "QUADS": fixed.reshape(-1, 8).astype(np.float32),
            "ANGLES": np.where(flipped, 180, 0).astype(np.int32),
        }


def load_dictionary(context: OpContext) -> tuple[str, ...]:
    """CTC symbols: blank first, then one character per line of the `dictionary` file, then a
    space when `append_space` is true (PP-OCR's convention)."""
    lines = context.file("dictionary").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    characters = [line.rstrip("\r") for line in lines]
    if context.flag("append_space", True):
        characters.append(" ")
    return ("", *characters)


class CtcDecodeOp(PostprocessOp):
    """PROBS [N,T,C] (per-step class probabilities, blank = class 0) -> TEXT [N] (BYTES, UTF-8)
    and CONFIDENCES [N] (mean probability of the kept steps; 0 for empty text).

    Greedy decoding: best class per step, repeats merged, blanks dropped. Rows are independent."""

    name = "ctc_decode"
    inputs = ("PROBS",)
    outputs = ("TEXT", "CONFIDENCES")
    row_wise: ClassVar[bool] = True

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.symbols = load_dictionary(context)
        if len(self.symbols) < 2:
            raise ConfigError(f"model '{context.model}': the CTC dictionary is empty")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = self.require(inputs, "PROBS", (-1, -1)).astype(np.float32, copy=False)
        if probs.shape[-1] != len(self.symbols):
            raise InvalidArgumentError(
                f"model '{self.context.model}': PROBS has {probs.shape[-1]} classes but the dictionary "
                f"gives {len(self.symbols)} (blank + characters)"
            )
        lead = probs.shape[:-2]
        flat = probs.reshape(int(np.prod(lead)), *probs.shape[-2:])  # explicit: N may be 0
        best = np.argmax(flat, axis=2)
        best_prob = np.max(flat, axis=2)
        changed = np.ones_like(best, dtype=bool)
        changed[:, 1:] = best[:, 1:] != best[:, :-1]
        kept = changed & (best != 0)
        texts = np.empty(len(flat), dtype=object)
        confidences = np.zeros(len(flat), dtype=np.float32)
        for row in range(len(flat)):
            indices = best[row][kept[row]]
            texts[row] = "".join(self.symbols[i] for i in indices).encode("utf-8")
            if indices.size:
                confidences[row] = float(np.mean(best_prob[row][kept[row]]))
        return {"TEXT": texts.reshape(lead), "CONFIDENCES": confidences.reshape(lead)}


class TextFilterOp(PostprocessOp):
    """TEXT [N] (BYTES), SCORES [N], QUADS [N,8] -> the same three keeping only the lines whose
    recognition score is at least `min_score` (0.5, rapidocr's text_score): an upside-down or
    non-text region reads as low-confidence garbage, which the reference pipeline drops."""

    name = "text_filter"
    inputs = ("TEXT", "SCORES", "QUADS")
    outputs = ("TEXT", "SCORES", "QUADS")

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.min_score = context.number("min_score", 0.5)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = self.require(inputs, "TEXT").reshape(-1)
        scores = self.require(inputs, "SCORES").reshape(-1).astype(np.float32)
        quads = self.require(inputs, "QUADS", (8,)).reshape(-1, 8).astype(np.float32)
        if not len(texts) == len(scores) == len(quads):
            raise InvalidArgumentError(
                f"model '{self.context.model}': {len(texts)} TEXT, {len(scores)} SCORES and "
                f"{len(quads)} QUADS rows differ"
            )
        keep = scores >= self.min_score
        return {"TEXT": texts[keep], "SCORES": scores[keep], "QUADS": quads[keep]}
