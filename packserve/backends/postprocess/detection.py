"""Detection decoders: SSD/RetinaFace prior boxes and anchor-free YOLO grids, then NMS and the
letterbox inverse so that boxes come out in original image pixels.

Each request carries one image (the models run with max_batch_size 0 here) because the number of
detections differs per image: outputs are [N, ...] with N >= 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from packserve.backends.postprocess.classify import read_labels
from packserve.backends.postprocess.geometry import LetterboxTransform, batched_nms, nms, square_boxes
from packserve.backends.postprocess.op import OpContext, PostprocessOp
from packserve.errors import ConfigError, InvalidArgumentError


def drop_unit_batch(array: np.ndarray, rank: int, where: str) -> np.ndarray:
    """Strip a leading batch dimension of 1 so the array has `rank` dimensions."""
    while array.ndim > rank and array.shape[0] == 1:
        array = array[0]
    if array.ndim != rank:
        raise InvalidArgumentError(
            f"{where}: expected {rank} dimensions (one image), got shape {list(array.shape)}"
        )
    return array


def read_transform(
    op: PostprocessOp, inputs: Mapping[str, np.ndarray], fallback_size: tuple[int, int]
) -> LetterboxTransform:
    if "TRANSFORM" in inputs:
        return LetterboxTransform.from_tensor(
            inputs["TRANSFORM"], f"model '{op.context.model}' input 'TRANSFORM'"
        )
    return LetterboxTransform.identity(*fallback_size)


@lru_cache(maxsize=16)
def prior_boxes(
    width: int, height: int, strides: tuple[int, ...], min_sizes: tuple[tuple[float, ...], ...]
) -> np.ndarray:
    """[N, 4] priors (cx, cy, w, h) in model pixels, row-major per feature map cell and, within a
    cell, one prior per size - the order RetinaFace/SSD heads emit their predictions in."""
    levels = []
    for stride, sizes in zip(strides, min_sizes, strict=True):
        cols, rows = math.ceil(width / stride), math.ceil(height / stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        centres = np.repeat(centres, len(sizes), axis=0)
        extents = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (rows * cols, 1))
        levels.append(np.hstack([centres, extents]))
    return np.concatenate(levels).astype(np.float32)


def parse_min_sizes(raw: str, model: str) -> tuple[tuple[float, ...], ...]:
    try:
        return tuple(tuple(float(v) for v in level.split(",")) for level in raw.split(";"))
    except ValueError:
        raise ConfigError(f"model '{model}': min_sizes must look like '16,32;64,128', got '{raw}'") from None


class PriorBoxDecodeOp(PostprocessOp):
    """LOC [N,4], CONF [N,C], optional LANDMARKS [N,2k], TRANSFORM [6] -> BOXES [M,4] (x1,y1,x2,y2),
    SCORES [M], CLASS_IDS [M], LANDMARKS [M,2k], SQUARE_BOXES [M,4], all in original pixels.

    Parameters: input_size (WxH the model ran at), strides ("8,16,32"), min_sizes
    ("16,32;64,128;256,512"), variances ("0.1,0.2"), score_threshold, iou_threshold,
    max_detections, background ("true": class 0 of CONF is background, as in RetinaFace/SSD)."""

    name = "prior_box_decode"
    inputs = ("LOC", "CONF")
    optional_inputs = ("LANDMARKS", "TRANSFORM")
    outputs = ("BOXES", "SCORES", "CLASS_IDS", "LANDMARKS", "SQUARE_BOXES")

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.input_size = context.size("input_size")
        self.strides = tuple(int(s) for s in context.numbers("strides", (8, 16, 32)))
        self.min_sizes = parse_min_sizes(context.text("min_sizes", "16,32;64,128;256,512"), context.model)
        if len(self.min_sizes) != len(self.strides):
            raise ConfigError(f"model '{context.model}': one min_sizes group is needed per stride")
        variances = context.numbers("variances", (0.1, 0.2))
        if len(variances) != 2:
            raise ConfigError(f"model '{context.model}': variances needs 2 values, got {variances}")
        self.centre_variance, self.size_variance = variances
        self.score_threshold = context.number("score_threshold", 0.5)
        self.iou_threshold = context.number("iou_threshold", 0.4)
        self.max_detections = context.integer("max_detections", 100)
        self.background = context.flag("background", True)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        where = f"model '{self.context.model}'"
        loc = drop_unit_batch(self.require(inputs, "LOC", (4,)), 2, f"{where} input 'LOC'").astype(np.float32)
        conf = drop_unit_batch(self.require(inputs, "CONF"), 2, f"{where} input 'CONF'").astype(np.float32)
        priors = prior_boxes(*self.input_size, self.strides, self.min_sizes)
        if loc.shape[0] != priors.shape[0] or conf.shape[0] != priors.shape[0]:
            raise InvalidArgumentError(
                f"{where}: {priors.shape[0]} priors for input_size {self.input_size}, "
                f"got LOC {list(loc.shape)} and CONF {list(conf.shape)}"
            )
        first_class = 1 if self.background else 0
        class_scores = conf[:, first_class:]
        classes = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(classes)), classes]
        keep = np.flatnonzero(scores > self.score_threshold)
        centres = priors[keep, :2] + loc[keep, :2] * self.centre_variance * priors[keep, 2:]
        sizes = priors[keep, 2:] * np.exp(loc[keep, 2:] * self.size_variance)
        boxes = np.hstack([centres - sizes / 2, centres + sizes / 2])
        picked = keep_detections(boxes, scores[keep], classes[keep], self.iou_threshold, self.max_detections)
        transform = read_transform(self, inputs, self.input_size)
        result = detections(transform, boxes[picked], scores[keep][picked], classes[keep][picked])
        landmarks = inputs.get("LANDMARKS")
        if landmarks is not None:
            points = drop_unit_batch(np.asarray(landmarks, dtype=np.float32), 2, f"{where} input 'LANDMARKS'")
            chosen = points[keep][picked].reshape(len(picked), points.shape[1] // 2, 2)
            chosen = (
                priors[keep][picked][:, None, :2]
                + chosen * self.centre_variance * priors[keep][picked][:, None, 2:]
            )
            result["LANDMARKS"] = transform.points_to_original(chosen.reshape(len(picked), points.shape[1]))
        else:
            result["LANDMARKS"] = np.zeros((len(picked), 0), dtype=np.float32)
        return result


class YoloDecodeOp(PostprocessOp):
    """PREDICTIONS [4+C, N] (YOLOv8 layout) or [N, 4+C] / [N, 5+C] with objectness (YOLOv5), boxes
    as (cx, cy, w, h) in model pixels; TRANSFORM [6] -> BOXES [M,4], SCORES [M], CLASS_IDS [M],
    LABELS [M] (BYTES) in original pixels.

    Parameters: input_size (WxH), objectness ("true" for YOLOv5-style), score_threshold,
    iou_threshold, max_detections, class_agnostic ("true": one NMS across classes), labels."""

    name = "yolo_decode"
    inputs = ("PREDICTIONS",)
    optional_inputs = ("TRANSFORM",)
    outputs = ("BOXES", "SCORES", "CLASS_IDS", "LABELS")

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.input_size = context.size("input_size")
        self.objectness = context.flag("objectness", False)
        self.score_threshold = context.number("score_threshold", 0.25)
        self.iou_threshold = context.number("iou_threshold", 0.45)
        self.max_detections = context.integer("max_detections", 300)
        self.class_agnostic = context.flag("class_agnostic", False)
        self.labels = read_labels(context)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        where = f"model '{self.context.model}' input 'PREDICTIONS'"
        rows = drop_unit_batch(self.require(inputs, "PREDICTIONS"), 2, where).astype(np.float32)
        head = 5 if self.objectness else 4
        # YOLOv8 exports channels first ([4+C, anchors]); anchors always outnumber channels.
        if rows.shape[0] < rows.shape[1]:
            rows = rows.T
        if rows.shape[1] <= head:
            raise InvalidArgumentError(
                f"{where}: expected at least {head + 1} values per row, got {rows.shape[1]}"
            )
        class_scores = rows[:, head:]
        if self.objectness:
            class_scores = class_scores * rows[:, 4:5]
        classes = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(classes)), classes]
        keep = np.flatnonzero(scores > self.score_threshold)
        centres, sizes = rows[keep, :2], rows[keep, 2:4]
        boxes = np.hstack([centres - sizes / 2, centres + sizes / 2])
        nms_classes = np.zeros_like(classes[keep]) if self.class_agnostic else classes[keep]
        picked = keep_detections(boxes, scores[keep], nms_classes, self.iou_threshold, self.max_detections)
        transform = read_transform(self, inputs, self.input_size)
        result = detections(transform, boxes[picked], scores[keep][picked], classes[keep][picked])
        del result["SQUARE_BOXES"]
        names = [self.labels[i] if i < len(self.labels) else str(i) for i in result["CLASS_IDS"]]
        result["LABELS"] = np.array([name.encode("utf-8") for name in names], dtype=object)
        return result


def keep_detections(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, limit: int
) -> np.ndarray:
    if len(np.unique(classes)) <= 1:
        return nms(boxes, scores, iou, limit)
    return batched_nms(boxes, scores, classes, iou, limit)


def detections(
    transform: LetterboxTransform, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray
) -> dict[str, np.ndarray]:
    original = transform.points_to_original(boxes.reshape(-1, 4))
    return {
        "BOXES": original,
        "SCORES": scores.astype(np.float32).reshape(-1),
        "CLASS_IDS": classes.astype(np.int32).reshape(-1),
        "SQUARE_BOXES": square_boxes(original),
    }


class RelativePointsOp(PostprocessOp):
    """BOXES [N,4] (the regions a cascade model saw) and POINTS [N,2k] given as fractions of each
    box, all x first then all y (MTCNN O-Net order) -> LANDMARKS [N,2k] as (x, y) pairs in pixels."""

    name = "relative_points"
    inputs = ("BOXES", "POINTS")
    outputs = ("LANDMARKS",)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        boxes = self.require(inputs, "BOXES", (4,)).reshape(-1, 4).astype(np.float32)
        points = self.require(inputs, "POINTS").astype(np.float32)
        points = points.reshape(len(boxes), points.shape[-1] if points.ndim else 0)
        if points.shape[0] != boxes.shape[0] or points.shape[1] % 2:
            raise InvalidArgumentError(
                f"model '{self.context.model}': POINTS {list(points.shape)} does not match "
                f"BOXES {list(boxes.shape)}"
            )
        half = points.shape[1] // 2
        xs = boxes[:, 0:1] + points[:, :half] * (boxes[:, 2:3] - boxes[:, 0:1])
        ys = boxes[:, 1:2] + points[:, half:] * (boxes[:, 3:4] - boxes[:, 1:2])
        pairs = np.stack([xs, ys], axis=2).reshape(len(boxes), 2 * half)
        return {"LANDMARKS": pairs.astype(np.float32)}
