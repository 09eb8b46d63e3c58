"""Python models that misbehave on demand, for the reliability tests of isolation and limits.

Each doubles INPUT0 (FP32 [4], batching) like `python_add`, until a request's first value is
TRIGGER: then it does its fault (exit, segv, spin for SPIN_S, hang for 600 s, leak 20 MiB, raise).
Everything else is normal.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

TRIGGER = 13.0
SPIN_S = 12.0  # a spin ends by itself after this (an in-process spinner cannot be stopped)

_MODEL = """\
import ctypes
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FAULT = "{fault}"
SPIN_S = {spin_s}
_leaked = []


def _fault():
    if FAULT == "exit":
        os._exit(1)
    if FAULT == "segv":
        ctypes.string_at(0)
    if FAULT == "spin":
        deadline = time.monotonic() + SPIN_S
        while time.monotonic() < deadline:  # pure Python: holds the GIL
            pass
    if FAULT == "hang":
        time.sleep(600)
    if FAULT == "leak":
        block = bytearray(20 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
        _leaked.append(block)
    if FAULT == "raise":
        raise RuntimeError("asked to fail")


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]

    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if float(values.flat[0]) == {trigger}:
                _fault()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", values * 2)]))
        return responses
"""

_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {width} ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {width} ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{parameters}
"""


def write_faulty_model(root: Path, name: str, fault: str = "none", width: int = 4, **parameters: str) -> Path:
    """A python model `name` under `root` that does `fault` on TRIGGER; `parameters` become
    config parameters (isolation="process", execution_timeout_s="2", max_rss_mb="300")."""
    model_dir = root / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / "model.py").write_text(_MODEL.format(fault=fault, trigger=TRIGGER, spin_s=SPIN_S))
    params = "\n".join(
        f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'
        for key, value in parameters.items()
    )
    (model_dir / "config.pbtxt").write_text(
        textwrap.dedent(_CONFIG.format(name=name, width=width, parameters=params))
    )
    return model_dir


def row(value: float = 1.0, width: int = 4) -> np.ndarray:
    return np.full((1, width), value, dtype=np.float32)
