from __future__ import annotations

import numpy as np
import pytest

from packserve.backends.postprocess.geometry import LetterboxTransform, batched_nms, nms, square_boxes
from packserve.errors import InvalidArgumentError


def test_nms_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5, max_detections=1).tolist() == [1]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]


def test_batched_nms_never_suppresses_across_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    assert sorted(batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5).tolist()) == [0, 1]
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).shape == (0,)


def test_letterbox_inverse_maps_and_clips() -> None:
    # A 200x100 image letterboxed to 100x100: scale 0.5, 25 px padding on top.
    transform = LetterboxTransform.from_tensor(np.array([[0.5, 0.5, 0, 25, 200, 100]]), "t")
    out = transform.points_to_original(np.array([[10, 30, 60, 80], [-5, 0, 120, 200]]))
    np.testing.assert_allclose(out, [[20, 10, 120, 100], [0, 0, 200, 100]])


def test_bad_transform_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgumentError, match="6 values"):
        LetterboxTransform.from_tensor(np.zeros(4), "model 'x' input 'TRANSFORM'")
    with pytest.raises(InvalidArgumentError, match="positive"):
        LetterboxTransform.from_tensor(np.array([0, 1, 0, 0, 1, 1]), "t")


def test_square_boxes_keep_centre() -> None:
    out = square_boxes(np.array([[0, 0, 10, 20]], dtype=np.float32))
    np.testing.assert_allclose(out, [[-5, 0, 15, 20]])
