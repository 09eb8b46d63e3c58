from __future__ import annotations

import numpy as np
import pytest

from packserve.backends.image import (
    center_crop_geometry,
    letterbox_geometry,
    map_boxes_to_canvas,
    map_boxes_to_original,
    resize_geometry,
    shorter_side_geometry,
)


def test_letterbox_fits_and_centers() -> None:
    t = letterbox_geometry(1280, 720, 640, 640)
    assert (t.resize_width, t.resize_height) == (640, 360)
    assert (t.offset_x, t.offset_y) == (0, 140)
    assert t.scale_x == t.scale_y == 0.5
    assert list(t.meta()) == [0.5, 0.5, 0, 140, 1280, 720]


def test_letterbox_top_left_and_upscale() -> None:
    t = letterbox_geometry(100, 50, 640, 640, center=False)
    assert (t.resize_width, t.resize_height, t.offset_x, t.offset_y) == (640, 320, 0, 0)
    capped = letterbox_geometry(100, 50, 640, 640, center=False, max_upscale=1.0)
    assert (capped.resize_width, capped.resize_height) == (100, 50)


def test_letterbox_scale_is_the_exact_ratio_after_rounding() -> None:
    t = letterbox_geometry(333, 777, 640, 640)
    assert t.resize_height == 640
    assert t.scale_x == pytest.approx(t.resize_width / 333)
    assert t.resize_width + 2 * t.offset_x in (640, 639)


def test_center_crop_and_resize() -> None:
    t = center_crop_geometry(640, 480, 224, 224, 256)
    assert (t.resize_width, t.resize_height) == (341, 256)
    assert (t.offset_x, t.offset_y) == (-58, -16)
    r = resize_geometry(640, 480, 320, 320)
    assert (r.scale_x, r.scale_y, r.offset_x) == (0.5, 320 / 480, 0)


def test_center_crop_never_crops_padding() -> None:
    t = center_crop_geometry(1000, 100, 224, 224, 150)
    assert t.resize_height >= 224 and t.resize_width >= 224


def test_shorter_side_caps_at_canvas() -> None:
    t = shorter_side_geometry(640, 480, 1333, 1333, 800)
    assert (t.resize_width, t.resize_height) == (1067, 800)
    wide = shorter_side_geometry(4000, 500, 1333, 1333, 800)
    assert wide.resize_width == 1333 and wide.offset_x == 0


@pytest.mark.parametrize("size", [(1280, 720), (333, 777), (50, 2000), (640, 640)])
def test_box_round_trip_is_identity_within_a_pixel(size: tuple[int, int]) -> None:
    w, h = size
    rng = np.random.default_rng(1)
    x1 = rng.uniform(0, w - 2, 50)
    y1 = rng.uniform(0, h - 2, 50)
    boxes = np.stack([x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)], axis=1).astype(np.float32)
    meta = letterbox_geometry(w, h, 640, 640).meta()
    forward = map_boxes_to_canvas(boxes, meta)
    assert forward.min() >= 0 and forward.max() <= 640
    np.testing.assert_allclose(map_boxes_to_original(forward, meta), boxes, atol=1.0)


def test_map_back_clips_and_takes_quads() -> None:
    meta = letterbox_geometry(1280, 720, 640, 640).meta()
    assert map_boxes_to_original(np.array([[0, 0, 640, 640]]), meta).tolist() == [[0, 0, 1280, 720]]
    quad = np.array([[10, 150, 20, 150, 20, 160, 10, 160]], dtype=np.float32)
    assert map_boxes_to_original(quad, meta).tolist() == [[20, 20, 40, 20, 40, 40, 20, 40]]


def test_bad_meta_and_boxes_raise() -> None:
    with pytest.raises(ValueError, match="6 values"):
        map_boxes_to_original(np.zeros((1, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="positive"):
        map_boxes_to_original(np.zeros((1, 4)), np.zeros(6))
    with pytest.raises(ValueError, match="even"):
        map_boxes_to_original(np.zeros((1, 3)), np.array([1, 1, 0, 0, 10, 10]))
