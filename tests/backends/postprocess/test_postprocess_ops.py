from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from packserve.backends.postprocess.classify import ClassifyOp, L2NormalizeOp
from packserve.backends.postprocess.detection import (
    PriorBoxDecodeOp,
    RelativePointsOp,
    YoloDecodeOp,
    prior_boxes,
)
from packserve.backends.postprocess.op import OpContext
from packserve.backends.postprocess.text import CtcDecodeOp, DbTextBoxesOp, TextAngleFixOp
from packserve.errors import ConfigError, InvalidArgumentError

MakeContext = Callable[..., OpContext]


def test_classify_softmax_top_k_with_labels(make_context: MakeContext) -> None:
    op = ClassifyOp(make_context({"top_k": "2", "softmax": "true", "labels": "cat,dog,fox"}))
    out = op.run({"SCORES": np.array([[1.0, 3.0, 2.0], [5.0, 0.0, 0.0]], dtype=np.float32)})
    assert out["LABELS"].tolist() == [[b"dog", b"fox"], [b"cat", b"dog"]]
    assert out["CLASS_IDS"].tolist() == [[1, 2], [0, 1]]
    expected = np.exp([3.0, 2.0]) / np.exp([1.0, 3.0, 2.0]).sum()
    np.testing.assert_allclose(out["PROBABILITIES"][0], expected, rtol=1e-6)


def test_classify_label_count_mismatch(make_context: MakeContext) -> None:
    op = ClassifyOp(make_context({"labels": "a,b"}))
    with pytest.raises(ConfigError, match="2 labels"):
        op.run({"SCORES": np.zeros((1, 3), np.float32)})


def test_l2_normalize_rows_and_pooled_maps(make_context: MakeContext) -> None:
    op = L2NormalizeOp(make_context({}))
    out = op.run({"EMBEDDING": np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)[:, :, None, None]})
    np.testing.assert_allclose(out["EMBEDDING"], [[0.6, 0.8], [0.0, 0.0]])


def test_prior_box_decode_finds_planted_face(make_context: MakeContext) -> None:
    op = PriorBoxDecodeOp(make_context({"input_size": "64x64", "score_threshold": "0.5"}))
    priors = prior_boxes(64, 64, (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    loc = np.zeros((1, len(priors), 4), np.float32)
    conf = np.tile(np.array([0.99, 0.01], np.float32), (1, len(priors), 1))
    landmarks = np.zeros((1, len(priors), 10), np.float32)
    target = 9  # third cell of the stride-8 grid, 32 px prior: centre (20, 4)
    conf[0, target] = [0.05, 0.95]
    conf[0, target + 2] = [0.1, 0.9]  # next cell, overlaps: suppressed by NMS
    loc[0, target] = [1.0, 0.0, 0.0, 0.0]  # shift the centre by 0.1 * 32 = 3.2 px
    # Letterbox: original 128x128 scaled by 0.5, no padding.
    transform = np.array([0.5, 0.5, 0, 0, 128, 128], np.float32)
    out = op.run({"LOC": loc, "CONF": conf, "LANDMARKS": landmarks, "TRANSFORM": transform})
    centre_x, centre_y = priors[target, 0] + 3.2, priors[target, 1]
    expected = np.array([centre_x - 16, centre_y - 16, centre_x + 16, centre_y + 16]) * 2
    np.testing.assert_allclose(out["BOXES"], [np.clip(expected, 0, 128)], atol=1e-4)
    np.testing.assert_allclose(out["SCORES"], [0.95])
    np.testing.assert_allclose(out["LANDMARKS"][0, :2], np.array([priors[target, 0], centre_y]) * 2)


def test_prior_box_decode_wrong_prior_count(make_context: MakeContext) -> None:
    op = PriorBoxDecodeOp(make_context({"input_size": "64x64"}))
    with pytest.raises(InvalidArgumentError, match="priors"):
        op.run({"LOC": np.zeros((1, 5, 4), np.float32), "CONF": np.zeros((1, 5, 2), np.float32)})


def test_yolo_decode_channels_first_with_class_aware_nms(make_context: MakeContext) -> None:
    op = YoloDecodeOp(make_context({"input_size": "100x100", "labels": "person,car"}))
    rows = np.zeros((8, 6), np.float32)  # [cx, cy, w, h, p(person), p(car)] x 8 anchors
    rows[0] = [50, 50, 20, 20, 0.9, 0.1]
    rows[1] = [51, 50, 20, 20, 0.8, 0.1]  # same person again: suppressed
    rows[2] = [50, 50, 20, 20, 0.0, 0.7]  # a car at the same place: kept (other class)
    out = op.run({"PREDICTIONS": rows.T[None], "TRANSFORM": np.array([1, 1, 0, 0, 100, 100], np.float32)})
    assert out["LABELS"].tolist() == [b"person", b"car"]
    np.testing.assert_allclose(out["BOXES"], [[40, 40, 60, 60], [40, 40, 60, 60]])


def test_relative_points_to_pixels(make_context: MakeContext) -> None:
    op = RelativePointsOp(make_context({}))
    points = np.array([[0.0, 0.5, 1.0, 0.25, 0.75, 0.0, 0.5, 1.0, 0.25, 0.75]], np.float32)
    out = op.run({"BOXES": np.array([[10, 20, 30, 60]], np.float32), "POINTS": points})
    np.testing.assert_allclose(out["LANDMARKS"][0, :6], [10, 20, 20, 40, 30, 60])
    empty = op.run({"BOXES": np.zeros((0, 4), np.float32), "POINTS": np.zeros((0, 10), np.float32)})
    assert empty["LANDMARKS"].shape[0] == 0


def test_db_text_boxes_from_synthetic_map(make_context: MakeContext) -> None:
    probability = np.zeros((64, 128), np.float32)
    probability[10:20, 20:100] = 0.9  # a long line at the top
    probability[40:50, 10:40] = 0.8  # a short line below
    box = cv2.boxPoints(((64.0, 56.0), (30.0, 4.0), 0.0))
    cv2.fillPoly(probability, [box.astype(np.int32)], 0.2)  # too faint: dropped by box_thresh
    op = DbTextBoxesOp(make_context({}))
    # Letterbox: original 256x128 at scale 0.5.
    out = op.run({"PROB_MAP": probability[None, None], "TRANSFORM": np.array([0.5, 0.5, 0, 0, 256, 128])})
    quads = out["QUADS"].reshape(-1, 4, 2)
    assert len(quads) == 2
    first, second = quads
    # Unclip grows the 80x10 region by area * 1.6 / perimeter = 7.1 px per side (model pixels).
    assert first[0, 0] == pytest.approx(2 * (20 - 7.1), abs=3)
    assert first[2, 0] == pytest.approx(2 * (100 + 7.1), abs=3)
    assert first[0, 1] < first[3, 1]  # top-left first, clockwise
    assert second[0, 1] > first[0, 1]
    assert np.all(out["SCORES"] > 0.7)


def test_db_text_boxes_empty_map(make_context: MakeContext) -> None:
    out = DbTextBoxesOp(make_context({})).run({"PROB_MAP": np.zeros((1, 1, 32, 32), np.float32)})
    assert out["QUADS"].shape == (0, 8) and out["SCORES"].shape == (0,)


def test_text_angle_fix_rotates_upside_down_lines(make_context: MakeContext) -> None:
    quads = np.array([[0, 0, 10, 0, 10, 5, 0, 5], [0, 0, 10, 0, 10, 5, 0, 5]], np.float32)
    probs = np.array([[0.99, 0.01], [0.02, 0.98]], np.float32)
    out = TextAngleFixOp(make_context({})).run({"QUADS": quads, "ANGLE_PROBS": probs})
    assert out["ANGLES"].tolist() == [0, 180]
    assert out["QUADS"][0].tolist() == quads[0].tolist()
    assert out["QUADS"][1].tolist() == [10, 5, 0, 5, 0, 0, 10, 0]


def test_ctc_decode_merges_repeats_and_drops_blanks(make_context: MakeContext, tmp_path: Path) -> None:
    (tmp_path / "dict.txt").write_text("a\nb\nc\n", encoding="utf-8")
    op = CtcDecodeOp(make_context({"dictionary": "dict.txt"}))
    steps = [1, 1, 0, 1, 2, 2, 4, 3, 0]  # a a - a b b ' ' c -  -> "aab c"
    probs = np.full((1, len(steps), 5), 0.01, np.float32)
    probs[0, np.arange(len(steps)), steps] = 0.9
    probs[0, 3, 1] = 0.5
    out = op.run({"PROBS": probs})
    assert out["TEXT"].tolist() == [b"aab c"]
    assert out["CONFIDENCES"][0] == pytest.approx((0.9 + 0.5 + 0.9 + 0.9 + 0.9) / 5)
    blank = op.run({"PROBS": np.eye(5, dtype=np.float32)[[0, 0]][None]})
    assert blank["TEXT"].tolist() == [b""] and blank["CONFIDENCES"][0] == 0
    with pytest.raises(InvalidArgumentError, match="dictionary"):
        op.run({"PROBS": np.zeros((1, 3, 7), np.float32)})


def test_ctc_missing_dictionary_is_config_error(make_context: MakeContext) -> None:
    with pytest.raises(ConfigError, match="dictionary"):
        CtcDecodeOp(make_context({"dictionary": "nope.txt"}))


def test_prior_box_decode_without_detections_gives_empty_tensors(make_context: MakeContext) -> None:
    op = PriorBoxDecodeOp(make_context({"input_size": "64x64"}))
    count = len(prior_boxes(64, 64, (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))))
    out = op.run({
        "LOC": np.zeros((1, count, 4), np.float32),
        "CONF": np.tile(np.array([1.0, 0.0], np.float32), (1, count, 1)),
        "LANDMARKS": np.zeros((1, count, 10), np.float32),
    })  # fmt: skip
    assert out["BOXES"].shape == (0, 4) and out["LANDMARKS"].shape == (0, 10) and out["SCORES"].shape == (0,)
