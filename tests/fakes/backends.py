"""Helpers: build a backend's ModelContext the way the repository loader does (parse -> normalize ->
validate -> spec), and a timer that records the phase calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from packserve.backends.base import ExecutionTimer, ModelContext
from packserve.backends.registry import load_backend
from packserve.config.normalize import normalize_config
from packserve.config.parse import parse_config_text
from packserve.config.to_spec import build_model_spec
from packserve.config.validate import validate_config
from packserve.messages import InferRequest, RequestedOutput


class RecordingTimer(ExecutionTimer):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def inputs_ready(self) -> None:
        self.calls.append("inputs_ready")

    def infer_done(self) -> None:
        self.calls.append("infer_done")


def model_context(model_dir: Path, version: int = 1, config_text: str | None = None) -> ModelContext:
    """The context a loader would hand the backend for `model_dir`/`version`; `config_text` is
    written as config.pbtxt first when given."""
    if config_text is not None:
        (model_dir / "config.pbtxt").write_text(config_text)
    config_file = model_dir / "config.pbtxt"
    raw = parse_config_text(config_file.read_text() if config_file.exists() else "")
    version_dir = model_dir / str(version)
    config = normalize_config(raw, model_dir, version_dir, available_gpus=(), backends=load_backend)
    validate_config(config, model_dir, available_gpus=())
    return ModelContext(
        spec=build_model_spec(config, model_dir),
        config=config,
        repository=model_dir.parent,
        model_dir=model_dir,
        version=version,
        version_dir=version_dir,
    )


def request(model: str, outputs: list[str] | None = None, **inputs: np.ndarray) -> InferRequest:
    wanted = None if outputs is None else [RequestedOutput(name) for name in outputs]
    return InferRequest(model_name=model, inputs=dict(inputs), outputs=wanted)
