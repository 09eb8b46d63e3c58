"""Row-wise ops on score vectors: softmax + top-k with labels, and L2-normalised embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from packserve.backends.postprocess.op import OpContext, PostprocessOp
from packserve.errors import ConfigError


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def read_labels(context: OpContext) -> tuple[str, ...]:
    """Labels from the `labels` parameter (comma list), the `labels_file` parameter (one per
    line), or the `label_filename` of the first output, in that order; () when none is set."""
    raw = context.spec.parameters.get("labels")
    if raw is not None:
        return tuple(part.strip() for part in raw.split(","))
    if "labels_file" in context.spec.parameters:
        lines = context.file("labels_file").read_text(encoding="utf-8").splitlines()
        return tuple(line.strip() for line in lines if line.strip())
    for output in context.spec.outputs:
        if output.labels:
            return output.labels
    return ()


class ClassifyOp(PostprocessOp):
    """SCORES [..., C] -> top-k LABELS (BYTES), PROBABILITIES (FP32), CLASS_IDS (INT32), [..., K].

    Parameters: `top_k` (default 1), `softmax` ("true" when the model emits logits), `labels`,
    `labels_file`. Rows are independent, so the op serves batching models as well."""

    name = "classify"
    inputs = ("SCORES",)
    outputs = ("LABELS", "PROBABILITIES", "CLASS_IDS")
    row_wise: ClassVar[bool] = True

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.top_k = context.integer("top_k", 1)
        self.apply_softmax = context.flag("softmax", False)
        self.labels = read_labels(context)
        if self.top_k < 1:
            raise ConfigError(f"model '{context.model}': top_k must be >= 1, got {self.top_k}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores = self.require(inputs, "SCORES", (-1,)).astype(np.float32, copy=False)
        if self.apply_softmax:
            scores = softmax(scores)
        classes = scores.shape[-1]
        if self.labels and len(self.labels) != classes:
            raise ConfigError(
                f"model '{self.context.model}': {len(self.labels)} labels configured but SCORES has "
                f"{classes} classes"
            )
        k = min(self.top_k, classes)
        order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
        probabilities = np.take_along_axis(scores, order, axis=-1)
        names = [self.labels[i] if self.labels else str(i) for i in range(classes)]
        lookup = np.array([name.encode("utf-8") for name in names], dtype=object)
        return {
            "LABELS": lookup[order],
            "PROBABILITIES": probabilities.astype(np.float32),
            "CLASS_IDS": order.astype(np.int32),
        }


class L2NormalizeOp(PostprocessOp):
    """EMBEDDING [..., D] -> EMBEDDING scaled to unit L2 norm along the last dimension.

    Any extra trailing dimensions of size 1 (pooled feature maps [D, 1, 1]) are dropped first."""

    name = "l2_normalize"
    inputs = ("EMBEDDING",)
    outputs = ("EMBEDDING",)
    row_wise: ClassVar[bool] = True

    def __init__(self, context: OpContext) -> None:
        super().__init__(context)
        self.epsilon = context.number("epsilon", 1e-12)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.require(inputs, "EMBEDDING").astype(np.float32, copy=False)
        while vectors.ndim > 1 and vectors.shape[-1] == 1:
            vectors = vectors[..., 0]
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        return {"EMBEDDING": (vectors / np.maximum(norms, self.epsilon)).astype(np.float32)}
