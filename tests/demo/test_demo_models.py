"""The real pretrained models with packserve's post-processing ops, run in-process through
onnxruntime with reference preprocessing written here (letterbox, perspective crops)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from packserve.backends.postprocess.detection import PriorBoxDecodeOp, RelativePointsOp
from packserve.backends.postprocess.op import OpContext
from packserve.backends.postprocess.text import CtcDecodeOp, DbTextBoxesOp, TextAngleFixOp
from packserve.demo import samples, weights
from packserve.model_spec import ModelSpec, VersionPolicy

pytestmark = pytest.mark.slow


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def op_context(parameters: Mapping[str, str], version_dir: Path = Path(".")) -> OpContext:
    spec = ModelSpec(
        "post", "", "postprocess", 0, (), (), None, (), VersionPolicy(), "", parameters=dict(parameters)
    )
    return OpContext(spec, version_dir)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = round(width * scale), round(height * scale)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, np.array([new_w / width, new_h / height, left, top, width, height], np.float32)


def ocr_normalize(rgb: np.ndarray) -> np.ndarray:
    return ((rgb[..., ::-1].astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)


def text_crop(image: np.ndarray, quad: np.ndarray, width: int) -> np.ndarray:
    corners = quad.reshape(4, 2).astype(np.float32)
    w = int(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[2] - corners[3])))
    h = int(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2])))
    target = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    line = cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, target), (w, h))
    resized_w = min(width, math.ceil(48 * w / h))
    out = np.zeros((3, 48, width), np.float32)
    out[:, :, :resized_w] = ocr_normalize(cv2.resize(line, (resized_w, 48)))
    return out


@pytest.fixture(scope="module")
def ocr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("ocr")
    (folder / "dictionary.txt").write_text("\n".join(weights.text_dictionary()) + "\n", encoding="utf-8")
    return {
        "det": session(weights.text_detector()),
        "cls": session(weights.text_angle_classifier()),
        "rec": session(weights.text_recognizer()),
        "decode": CtcDecodeOp(op_context({"dictionary": "dictionary.txt"}, folder)),
    }


def read_text(image: np.ndarray, ocr: dict[str, object]) -> list[str]:
    canvas, meta = letterbox(image, 640)
    det, cls, rec = (ocr[key] for key in ("det", "cls", "rec"))
    prob_map = det.run(None, {"input": ocr_normalize(canvas)[None]})[0]  # type: ignore[attr-defined]
    found = DbTextBoxesOp(op_context({})).run({"PROB_MAP": prob_map, "TRANSFORM": meta})
    crops = np.stack([text_crop(image, quad, 192) for quad in found["QUADS"]])
    angles = cls.run(None, {"input": crops})[0]  # type: ignore[attr-defined]
    fixed = TextAngleFixOp(op_context({})).run({"QUADS": found["QUADS"], "ANGLE_PROBS": angles})
    lines = np.stack([text_crop(image, quad, 320) for quad in fixed["QUADS"]])
    probs = rec.run(None, {"input": lines})[0]  # type: ignore[attr-defined]
    decoded = ocr["decode"].run({"PROBS": probs})  # type: ignore[attr-defined]
    return [text.decode() for text in decoded["TEXT"]]


def test_ocr_reads_rendered_text(ocr: dict[str, object]) -> None:
    assert read_text(samples.render_text(), ocr) == list(samples.SAMPLE_TEXT)


def test_ocr_reads_upside_down_text(ocr: dict[str, object]) -> None:
    upside_down = np.ascontiguousarray(samples.render_text()[::-1, ::-1])
    assert read_text(upside_down, ocr) == list(reversed(samples.SAMPLE_TEXT))


def test_one_face_in_astronaut_with_landmarks_inside() -> None:
    image = samples.photo("astronaut")
    canvas, meta = letterbox(image, 640)
    x = (canvas[..., ::-1].astype(np.float32) - [104, 117, 127]).transpose(2, 0, 1)[None].astype(np.float32)
    loc, conf, landmarks = session(weights.face_detector()).run(None, {"input": x})
    decode = PriorBoxDecodeOp(op_context({"input_size": "640x640", "score_threshold": "0.8"}))
    faces = decode.run({"LOC": loc, "CONF": conf, "LANDMARKS": landmarks, "TRANSFORM": meta})
    assert faces["BOXES"].shape == (1, 4)
    x1, y1, x2, y2 = faces["BOXES"][0]
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200  # the astronaut's face, top middle
    square = faces["SQUARE_BOXES"][0].astype(int)
    crop = cv2.resize(image[square[1] : square[3], square[0] : square[2]], (48, 48))
    outputs = session(weights.face_landmarker()).run(
        None, {"input": ((crop - 127.5) / 128)[None].astype(np.float32)}
    )
    assert outputs[2][0, 1] > 0.9  # O-Net agrees it is a face
    points = RelativePointsOp(op_context({})).run({"BOXES": faces["SQUARE_BOXES"], "POINTS": outputs[1]})
    for landmarks_xy in (points["LANDMARKS"][0], faces["LANDMARKS"][0]):
        xs, ys = landmarks_xy[0::2], landmarks_xy[1::2]
        assert np.all((xs > x1) & (xs < x2) & (ys > y1) & (ys < y2))
    assert np.abs(points["LANDMARKS"] - faces["LANDMARKS"]).max() < 10  # two models, one face


def test_content_embedding_is_stable_and_normalizable() -> None:
    model = session(weights.content_classifier())

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crop = cv2.resize(image, (256, 256))[16:240, 16:240, ::-1].astype(np.float32) - [104, 117, 123]
        probs, embedding = model.run(None, {"input": crop[None].astype(np.float32)})
        return probs[0], embedding[0] / np.linalg.norm(embedding[0])

    probs, first = run(samples.photo("astronaut"))
    _, again = run(samples.photo("astronaut"))
    _, other = run(samples.photo("coffee"))
    assert first.shape == (1024,) and np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    assert probs[0] > 0.9  # safe for work
    np.testing.assert_allclose(first, again, atol=1e-6)
    assert float(first @ other) < 0.95
