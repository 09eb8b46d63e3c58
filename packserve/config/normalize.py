"""Fill what a model config leaves out, the way Triton's auto-complete and normalization do.

Each step is a named function that completes one concern of the config it is given, in place;
`normalize_config` runs them in order on a copy, so the parsed config a caller holds is never
touched. The result still has to pass `validate.validate_config`.

The config layer sits above the backends' data but below the backends themselves: what a backend
contributes (its default model file name, its auto-complete from the model file) arrives through
a `BackendLookup` that the caller passes in (the repository passes `backends.registry.load_backend`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelInstanceGroup

from packserve.config.devices import visible_gpus
from packserve.errors import ConfigError
from packserve.model_spec import COMPOSITE_PLATFORMS, ENSEMBLE_PLATFORM, PLATFORMS, REGION_MAP_PLATFORM

__all__ = ["COMPOSITE_PLATFORMS", "ENSEMBLE_PLATFORM", "REGION_MAP_PLATFORM", "BackendHooks", "BackendLookup"]


class BackendHooks(Protocol):
    """What normalization needs from a backend (a `backends.base.BackendModel` class has both)."""

    default_model_filename: str

    def complete_config(self, config: ModelConfig, version_dir: Path) -> None: ...


# backend name -> its hooks; raises ConfigError for an unknown or uninstalled backend.
BackendLookup = Callable[[str], BackendHooks]

# Model files that identify a backend when the config names neither platform nor backend.
_BACKEND_BY_MODEL_FILE = {
    "model.onnx": "onnxruntime",
    "model.py": "python",
    "model.pt": "pytorch",
}
_BACKEND_BY_SUFFIX = {Path(name).suffix: backend for name, backend in _BACKEND_BY_MODEL_FILE.items()}


def _platform_by_backend() -> dict[str, str]:
    # The first platform listed for a backend is its canonical one (pytorch -> pytorch_libtorch).
    canonical: dict[str, str] = {}
    for platform, backend in PLATFORMS.items():
        canonical.setdefault(backend, platform)
    return canonical


def normalize_config(
    config: ModelConfig,
    model_dir: Path,
    version_dir: Path | None,
    available_gpus: Sequence[int] | None = None,
    auto_complete: bool = True,
    *,
    backends: BackendLookup,
) -> ModelConfig:
    """A completed copy of `config` for the model in `model_dir`; `backends` finds a backend's hooks.

    `auto_complete=False` (Triton's --disable-auto-complete-config) keeps the backend from filling
    inputs, outputs and max_batch_size from the model file; the defaults below still apply.

    `version_dir` is the folder the backend's auto-complete inspects (the newest selected version);
    None skips auto-complete. `available_gpus` defaults to the GPUs this process can see.
    """
    completed = ModelConfig()
    completed.CopyFrom(config)
    gpus = tuple(visible_gpus() if available_gpus is None else available_gpus)

    fill_name(completed, model_dir.name)
    resolve_platform_and_backend(completed, version_dir)
    if completed.platform not in COMPOSITE_PLATFORMS:
        backend_cls = backend_class(completed, backends)
        fill_default_model_filename(completed, backend_cls)
        if version_dir is not None and auto_complete:
            complete_from_backend(completed, backend_cls, version_dir)
        fill_instance_groups(completed, gpus)
        fill_optimization_defaults(completed)
    fill_version_policy(completed)
    fill_dynamic_batching_defaults(completed)
    fill_ensemble_step_versions(completed)
    return completed


def fill_name(config: ModelConfig, folder_name: str) -> None:
    """A model is named by its folder; a config that names it otherwise is a mistake."""
    if not config.name:
        config.name = folder_name
    elif config.name != folder_name:
        raise ConfigError(f"model config name '{config.name}' does not match its folder name '{folder_name}'")


def guess_backend_from_files(version_dir: Path | None, default_model_filename: str = "") -> str | None:
    """The backend a model's file implies: the configured file name's suffix, else the well-known
    file names present in the version folder. None when nothing identifies one."""
    if default_model_filename:
        return _BACKEND_BY_SUFFIX.get(Path(default_model_filename).suffix)
    if version_dir is None or not version_dir.is_dir():
        return None
    found = sorted(name for name in _BACKEND_BY_MODEL_FILE if (version_dir / name).exists())
    if len(found) > 1:
        raise ConfigError(
            f"cannot tell the backend from version folder '{version_dir}': it holds {' and '.join(found)}; "
            "set 'backend' in the model config"
        )
    return _BACKEND_BY_MODEL_FILE[found[0]] if found else None


def resolve_platform_and_backend(config: ModelConfig, version_dir: Path | None) -> None:
    """Make `platform` and `backend` agree: fill each from the other, or guess both from the files."""
    name = config.name
    if config.platform in COMPOSITE_PLATFORMS:
        if config.backend:
            raise ConfigError(
                f"{config.platform} model '{name}' must have no backend, got backend '{config.backend}'"
            )
        return
    if not config.platform and not config.backend:
        if config.HasField("ensemble_scheduling"):
            raise ConfigError(f"model '{name}' has 'ensemble_scheduling' but its platform is not 'ensemble'")
        guessed = guess_backend_from_files(version_dir, config.default_model_filename)
        if guessed is None:
            raise ConfigError(
                f"model '{name}' must specify 'platform' or 'backend': no model file in "
                f"'{version_dir}' identifies one (looked for {', '.join(sorted(_BACKEND_BY_MODEL_FILE))})"
            )
        config.backend = guessed
    if config.platform and not config.backend:
        backend = PLATFORMS.get(config.platform)
        if backend is None:
            known = ", ".join(sorted([*PLATFORMS, *COMPOSITE_PLATFORMS]))
            raise ConfigError(
                f"model '{name}' has unknown platform '{config.platform}' (known: {known}); "
                "set 'backend' instead"
            )
        config.backend = backend
    elif config.platform:
        implied = PLATFORMS.get(config.platform)
        if implied is not None and implied != config.backend:
            raise ConfigError(
                f"model '{name}' has platform '{config.platform}' (backend '{implied}') "
                f"but backend '{config.backend}'"
            )
    else:
        config.platform = _platform_by_backend().get(config.backend, "")


def backend_class(config: ModelConfig, backends: BackendLookup) -> BackendHooks:
    """The config's backend class; importing a backend module can fail in many ways, and each is
    this model's load failure, not the server's."""
    try:
        return backends(config.backend)
    except ConfigError as exc:
        raise ConfigError(f"model '{config.name}': {exc}") from exc
    except Exception as exc:
        raise ConfigError(
            f"model '{config.name}': backend '{config.backend}' failed to import: {type(exc).__name__}: {exc}"
        ) from exc


def fill_default_model_filename(config: ModelConfig, backend_cls: BackendHooks) -> None:
    if not config.default_model_filename:
        config.default_model_filename = backend_cls.default_model_filename


def complete_from_backend(config: ModelConfig, backend_cls: BackendHooks, version_dir: Path) -> None:
    """Let the backend fill inputs, outputs and max_batch_size from the model file."""
    try:
        backend_cls.complete_config(config, version_dir)
    except ConfigError:
        raise
    except Exception as exc:  # a backend bug or unreadable model file is this model's load failure
        raise ConfigError(
            f"auto-complete of model '{config.name}' by backend '{config.backend}' failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def fill_version_policy(config: ModelConfig) -> None:
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1


def fill_instance_groups(config: ModelConfig, available_gpus: Sequence[int]) -> None:
    """One group when none is given; names, kinds, counts and GPU lists as Triton fills them."""
    if not config.instance_group:
        # Triton names the implicit group after the model itself.
        config.instance_group.add(name=config.name, kind=ModelInstanceGroup.KIND_AUTO)
    gpus = set(available_gpus)
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == ModelInstanceGroup.KIND_AUTO:
            usable = bool(gpus) and all(gpu in gpus for gpu in group.gpus)
            group.kind = ModelInstanceGroup.KIND_GPU if usable else ModelInstanceGroup.KIND_CPU
        if group.count == 0:
            # One instance by default: instances share the cores, and on a CPU one intra-op
            # thread per instance measured better than more instances competing.
            group.count = 1
        if group.kind == ModelInstanceGroup.KIND_GPU and not group.gpus:
            group.gpus.extend(sorted(gpus))


def fill_optimization_defaults(config: ModelConfig) -> None:
    """Triton enables pinned staging memory unless told otherwise; shown in the served config."""
    optimization = config.optimization
    if not optimization.HasField("input_pinned_memory"):
        optimization.input_pinned_memory.enable = True
    if not optimization.HasField("output_pinned_memory"):
        optimization.output_pinned_memory.enable = True


def fill_dynamic_batching_defaults(config: ModelConfig) -> None:
    if not config.HasField("dynamic_batching"):
        return
    batching = config.dynamic_batching
    if not batching.preferred_batch_size and config.max_batch_size > 0:
        batching.preferred_batch_size.append(config.max_batch_size)
    if batching.priority_levels > 0 and batching.default_priority_level == 0:
        # Requests that name no priority go behind every explicitly prioritised one.
        batching.default_priority_level = batching.priority_levels


def fill_ensemble_step_versions(config: ModelConfig) -> None:
    """A step that names no model_version (proto default 0) uses the latest version, as -1 says."""
    for step in config.ensemble_scheduling.step:
        if step.model_version == 0:
            step.model_version = -1
