"""The contract of one post-processing operation and typed access to its config parameters.

An op is built once per model on the loader thread and then called from every instance's worker
thread; `run` must therefore keep no per-call state on the op object.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from packserve.errors import ConfigError, InvalidArgumentError
from packserve.model_spec import ModelSpec


@dataclass(frozen=True, slots=True)
class OpContext:
    spec: ModelSpec
    version_dir: Path  # where files named by parameters (dictionaries, label lists) are looked up

    @property
    def model(self) -> str:
        return self.spec.name

    def text(self, key: str, default: str | None = None) -> str:
        value = self.spec.parameters.get(key, default)
        if value is None:
            raise ConfigError(f"model '{self.model}': postprocess parameter '{key}' is required")
        return value

    def number(self, key: str, default: float) -> float:
        raw = self.spec.parameters.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(
                f"model '{self.model}': parameter '{key}' must be a number, got '{raw}'"
            ) from None

    def integer(self, key: str, default: int) -> int:
        value = self.number(key, default)
        if value != int(value):
            raise ConfigError(f"model '{self.model}': parameter '{key}' must be an integer, got {value}")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        raw = self.spec.parameters.get(key)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"model '{self.model}': parameter '{key}' must be true or false, got '{raw}'")

    def numbers(self, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        raw = self.spec.parameters.get(key)
        if raw is None:
            return default
        try:
            return tuple(float(part) for part in raw.split(",") if part.strip())
        except ValueError:
            raise ConfigError(
                f"model '{self.model}': parameter '{key}' must be a comma list of numbers, got '{raw}'"
            ) from None

    def size(self, key: str) -> tuple[int, int]:
        """A "WxH" parameter as (width, height)."""
        raw = self.text(key)
        width, sep, height = raw.lower().partition("x")
        if not sep or not width.strip().isdigit() or not height.strip().isdigit():
            raise ConfigError(f"model '{self.model}': parameter '{key}' must look like 640x480, got '{raw}'")
        return int(width), int(height)

    def file(self, key: str) -> Path:
        """A parameter naming a file, relative to the version folder unless absolute."""
        path = Path(self.text(key))
        if not path.is_absolute():
            path = self.version_dir / path
        if not path.is_file():
            raise ConfigError(f"model '{self.model}': file for parameter '{key}' not found: {path}")
        return path


class PostprocessOp(abc.ABC):
    """One operation: named input tensors in, named output tensors out, for one request."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]  # required inputs
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]]
    # True when the op works row by row on a leading batch dimension (usable with max_batch_size > 0).
    row_wise: ClassVar[bool] = False

    def __init__(self, context: OpContext) -> None:
        self.context = context

    @abc.abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute every output of this op for one request's inputs."""

    def require(
        self, inputs: Mapping[str, np.ndarray], name: str, last_dims: tuple[int, ...] = ()
    ) -> np.ndarray:
        """The input `name` as a numpy array, checking its trailing dimensions (-1 = any)."""
        tensor = inputs.get(name)
        if tensor is None:
            raise InvalidArgumentError(f"model '{self.context.model}': missing input '{name}'")
        array = np.asarray(tensor)
        shape = array.shape
        if last_dims:
            tail = shape[len(shape) - len(last_dims) :] if len(shape) >= len(last_dims) else ()
            if len(tail) != len(last_dims) or any(
                want != -1 and got != want for want, got in zip(last_dims, tail, strict=True)
            ):
                raise InvalidArgumentError(
                    f"model '{self.context.model}': input '{name}' expected trailing dims "
                    f"{list(last_dims)}, got shape {list(shape)}"
                )
        return array
