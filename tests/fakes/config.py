"""Fake backends and helpers for the config tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from tritonclient.grpc.model_config_pb2 import DataType as ConfigDataType
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.backends.base import BackendInstance, BackendModel, InstanceContext

# model_folder(name="m", config_text=None, config_name="config.pbtxt", versions=(1,), files=("model.onnx",))
ModelFolder = Callable[..., Path]


class FakeBackendBase(BackendModel):
    """Auto-completes one FP32 input and output of 3 elements, and records where it looked."""

    seen_version_dirs: ClassVar[list[Path]] = []

    @classmethod
    def complete_config(cls, config: ModelConfig, version_dir: Path) -> None:
        cls.seen_version_dirs.append(version_dir)
        if not config.input:
            config.input.add(name="INPUT0", data_type=ConfigDataType.TYPE_FP32, dims=[3])
        if not config.output:
            config.output.add(name="OUTPUT0", data_type=ConfigDataType.TYPE_FP32, dims=[3])

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        raise AssertionError("config tests never create instances")


class FakeOnnxModel(FakeBackendBase):
    default_model_filename = "model.onnx"


class FakePythonModel(FakeBackendBase):
    default_model_filename = "model.py"


class FakeTorchModel(FakeBackendBase):
    default_model_filename = "model.pt"


class FailingCompleteModel(FakeBackendBase):
    default_model_filename = "model.bin"

    @classmethod
    def complete_config(cls, config: ModelConfig, version_dir: Path) -> None:
        raise RuntimeError("corrupt model file")
