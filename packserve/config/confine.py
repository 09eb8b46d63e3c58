"""Model names and file paths that a config (or a load request's override) may use.

Why: the repository API lets a remote client name a model and replace its config. Without these
checks a load of `../outside/evil`, or an override whose `default_model_filename` is an absolute
path, imports and runs a python file outside the repository (the class of Triton's CVE-2023-31036).
So a model name is one plain folder name, and every file a config points at must resolve (symlinks
followed) inside the model's own folder.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.errors import ConfigError, InvalidArgumentError

MAX_MODEL_NAME_BYTES = 255  # a folder name on Linux file systems
# ORT parameters that name a path the backend reads or writes.
_PATH_PARAMETERS = ("trt_engine_cache_path",)


def check_model_name(name: str) -> None:
    """InvalidArgumentError unless `name` can be a model folder in the repository."""
    if not name:
        raise InvalidArgumentError("model name is empty")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_MODEL_NAME_BYTES:
        raise InvalidArgumentError(
            f"model name is {size} bytes long; the limit is {MAX_MODEL_NAME_BYTES} (one folder name)"
        )
    if name.startswith("."):
        raise InvalidArgumentError(f"model name '{_shown(name)}' starts with '.'")
    for char in name:
        if char in "/\\" or unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidArgumentError(
                f"model name '{_shown(name)}' contains {char!r}: a model name is one folder name "
                "without path separators or control characters"
            )


def confined_path(model_dir: Path, base: Path, relative: str, what: str) -> Path:
    """`base / relative`, resolved, or ConfigError when it is absolute, uses '..' or resolves
    (through symlinks) outside `model_dir`. `base` is `model_dir` or a folder inside it."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or PureWindowsPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        raise ConfigError(f"{what} '{relative}' is an absolute path; it must be relative to the model folder")
    if ".." in pure.parts or ".." in PureWindowsPath(relative).parts:
        raise ConfigError(f"{what} '{relative}' uses '..'; it must stay inside the model folder")
    root = model_dir.resolve()
    resolved = (base / relative).resolve()
    if not resolved.is_relative_to(root):
        raise ConfigError(f"{what} '{relative}' resolves to '{resolved}', outside the model folder '{root}'")
    return resolved


def check_config_paths(config: ModelConfig, model_dir: Path, versions: tuple[int, ...] | list[int]) -> None:
    """Every file the (normalized) config names, for every served version, stays in `model_dir`."""
    name = config.name or model_dir.name
    for version in versions:
        version_dir = confined_path(model_dir, model_dir, str(version), f"model '{name}': version folder")
        if config.default_model_filename:
            confined_path(
                model_dir,
                version_dir,
                config.default_model_filename,
                f"model '{name}': default_model_filename",
            )
    for output in config.output:
        if output.label_filename:
            confined_path(
                model_dir,
                model_dir,
                output.label_filename,
                f"model '{name}' output '{output.name}': label_filename",
            )
    for warmup in config.model_warmup:
        for input_name, data in warmup.inputs.items():
            if data.HasField("input_data_file"):
                confined_path(
                    model_dir,
                    model_dir / "warmup",
                    data.input_data_file,
                    f"model '{name}' warmup '{warmup.name}' input '{input_name}': input_data_file",
                )
    for key in _PATH_PARAMETERS:
        if key in config.parameters and config.parameters[key].string_value:
            confined_path(model_dir, model_dir, config.parameters[key].string_value, f"model '{name}': {key}")


def _shown(name: str, limit: int = 64) -> str:
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"
