"""The two model repositories of the pipeline benchmark, same models and batching settings.

packserve: `pipeline_pre` (the image backend: decode once, resize to 224 and 320, ImageNet
normalization, NCHW FP32), the three ONNX models on the onnxruntime backend, and the ensemble
`pipeline` (IMAGE BYTES -> three TOP1 INT64).

Triton 2.51 (its python backend; the reference install has no onnxruntime backend): the same
ensemble, with python-backend steps - `pipeline_pre` decodes and resizes with OpenCV, and each
network is a python model wrapping an ONNX Runtime session (one intra-op thread). Its stub
processes import onnxruntime and cv2 from this venv (appended to their sys.path).

Every model: max_batch_size 8, dynamic batching with a 5 ms queue delay, 2 CPU instances.
"""

from __future__ import annotations

import shutil
import site
from pathlib import Path

MAX_BATCH = 8
QUEUE_DELAY_US = 5000
INSTANCES = 2
NETWORKS = {  # model -> (input size, ensemble output)
    "mobilenet_v3_small": (224, "MOBILENET_TOP1"),
    "resnet18": (224, "RESNET_TOP1"),
    "lraspp": (320, "SEGMENT_TOP1"),
}
ENSEMBLE = "pipeline"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

_BATCHING = f"""max_batch_size: {MAX_BATCH}
dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_US} }}
instance_group [ {{ count: {INSTANCES}, kind: KIND_CPU }} ]
"""


def _param(key: str, value: str) -> str:
    return f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}\n'


def _network_config(name: str, size: int, head: str) -> str:
    return (
        f'name: "{name}"\n{head}{_BATCHING}'
        f'input [ {{ name: "INPUT", data_type: TYPE_FP32, dims: [ 3, {size}, {size} ] }} ]\n'
        'output [ { name: "TOP1", data_type: TYPE_INT64, dims: [ 1 ] } ]\n'
    )


def _pre_outputs() -> str:
    return (
        'output [ { name: "in224", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] },\n'
        '         { name: "in320", data_type: TYPE_FP32, dims: [ 3, 320, 320 ] } ]\n'
    )


def _ensemble_config() -> str:
    steps = [
        '{ model_name: "pipeline_pre" model_version: -1 input_map { key: "IMAGE" value: "IMAGE" }'
        ' output_map { key: "in224" value: "in224" } output_map { key: "in320" value: "in320" } }'
    ]
    outputs = []
    for name, (size, top) in NETWORKS.items():
        steps.append(
            f'{{ model_name: "{name}" model_version: -1 input_map {{ key: "INPUT" value: "in{size}" }}'
            f' output_map {{ key: "TOP1" value: "{top}" }} }}'
        )
        outputs.append(f'{{ name: "{top}", data_type: TYPE_INT64, dims: [ 1 ] }}')
    return (
        f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: {MAX_BATCH}\n'
        'input [ { name: "IMAGE", data_type: TYPE_STRING, dims: [ 1 ] } ]\n'
        f"output [ {', '.join(outputs)} ]\n"
        f"ensemble_scheduling {{ step [ {', '.join(steps)} ] }}\n"
    )


def _write(root: Path, name: str, config: str, files: dict[str, Path | str]) -> None:
    version = root / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    (root / name / "config.pbtxt").write_text(config)
    for file_name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, version / file_name)
        else:
            (version / file_name).write_text(content)


def write_packserve_repository(root: Path, onnx: dict[str, Path]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    mean, std = ",".join(map(str, MEAN)), ",".join(map(str, STD))
    pre = f'name: "pipeline_pre"\nbackend: "image"\n{_BATCHING}'
    pre += 'input [ { name: "IMAGE", data_type: TYPE_STRING, dims: [ 1 ] } ]\n' + _pre_outputs()
    for out in ("in224", "in320"):
        pre += _param(f"{out}.op", "resize") + _param(f"{out}.mean", mean) + _param(f"{out}.std", std)
    _write(root, "pipeline_pre", pre, {})
    for name, (size, _) in NETWORKS.items():
        head = 'platform: "onnxruntime_onnx"\n'
        _write(root, name, _network_config(name, size, head), {"model.onnx": onnx[name]})
    _write(root, ENSEMBLE, _ensemble_config(), {})
    return root


# The stub runs the system Python with its own numpy; OpenCV and ONNX Runtime come from this venv,
# appended to sys.path (after the system packages).
_VENV_PATH = """
import sys
for _path in {paths!r}:
    if _path not in sys.path:
        sys.path.append(_path)
"""

TRITON_PRE = f"""
import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

MEAN = np.array({MEAN}, np.float32) * 255
STD = np.array({STD}, np.float32) * 255


def prepare(pixels, size):
    resized = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
    return ((resized.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)


class TritonPythonModel:
    def initialize(self, args):
        cv2.setNumThreads(1)

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            out224, out320 = [], []
            for encoded in images:
                bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                out224.append(prepare(rgb, 224))
                out320.append(prepare(rgb, 320))
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("in224", np.stack(out224)), pb_utils.Tensor("in320", np.stack(out320))]))
        return responses
"""

TRITON_NETWORK = """
import os
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        parts = [pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() for r in requests]
        top = self.session.run(None, {"INPUT": np.concatenate(parts)})[0]
        responses, start = [], 0
        for part in parts:
            rows = top[start : start + len(part)]
            start += len(part)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOP1", rows)]))
        return responses
"""


def write_triton_repository(root: Path, onnx: dict[str, Path]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    pre = f'name: "pipeline_pre"\nbackend: "python"\n{_BATCHING}'
    pre += 'input [ { name: "IMAGE", data_type: TYPE_STRING, dims: [ 1 ] } ]\n' + _pre_outputs()
    prefix = _VENV_PATH.format(paths=site.getsitepackages())
    _write(root, "pipeline_pre", pre, {"model.py": prefix + TRITON_PRE})
    for name, (size, _) in NETWORKS.items():
        config = _network_config(name, size, 'backend: "python"\n')
        _write(root, name, config, {"model.py": prefix + TRITON_NETWORK, "model.onnx": onnx[name]})
    _write(root, ENSEMBLE, _ensemble_config(), {})
    return root
