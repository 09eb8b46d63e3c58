"""The one entry point the model repository calls to turn a model folder into a loadable config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.config.confine import check_config_paths
from packserve.config.ensemble_graph import check_ensemble_dataflow
from packserve.config.normalize import BackendLookup, fill_name, normalize_config
from packserve.config.parse import find_config_file, parse_config_file, parse_config_json
from packserve.config.region_map import RegionMapPlan, parse_region_map
from packserve.config.to_spec import build_model_spec, version_policy
from packserve.config.validate import validate_config, validate_version_policy
from packserve.config.versions import available_versions, select_versions
from packserve.errors import ConfigError
from packserve.model_spec import REGION_MAP_PLATFORM, ModelSpec


@dataclass(frozen=True, slots=True)
class ConfigLoadOptions:
    """Server-wide choices about reading configs (Triton's flags of the same meaning)."""

    config_name: str = ""  # --model-config-name: prefer configs/<name>.pbtxt
    auto_complete: bool = True  # False: --disable-auto-complete-config / --strict-model-config=true


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: ModelConfig  # normalized; served as is by the model-config endpoints
    spec: ModelSpec
    versions: tuple[int, ...]  # selected by the version policy, ascending (newest last)
    region_map: RegionMapPlan | None = None  # a region map's parameters, parsed


def load_model_config(
    model_dir: Path,
    override_json: str | None = None,
    *,
    backends: BackendLookup,
    available_gpus: Sequence[int] | None = None,
    options: ConfigLoadOptions | None = None,
) -> LoadedConfig:
    """parse -> select versions -> normalize (auto-complete from the newest selected version)
    -> validate -> spec. Every failure is a ConfigError whose message is the reason to show in the
    repository index.

    `override_json` replaces the folder's config file, as the load API's `config` parameter does in
    Triton. `backends` finds a backend's auto-complete hooks (the repository passes
    `backends.registry.load_backend`). `available_gpus` defaults to the GPUs this process can see.
    """
    if not model_dir.is_dir():
        raise ConfigError(f"model folder '{model_dir}' does not exist")
    options = options or ConfigLoadOptions()
    if override_json is None:
        path = find_config_file(model_dir, options.config_name)
        if path is None and not options.auto_complete:
            raise ConfigError(
                f"model '{model_dir.name}' has no config file and auto-complete is disabled "
                "(--disable-auto-complete-config / --strict-model-config=true)"
            )
        parsed = parse_config_file(path) if path is not None else ModelConfig()
    else:
        parsed = parse_config_json(override_json, source=f"config override for model '{model_dir.name}'")

    # The version policy decides which folder auto-complete reads, so it is checked first.
    named = ModelConfig()
    named.CopyFrom(parsed)
    fill_name(named, model_dir.name)
    if named.HasField("version_policy"):
        validate_version_policy(named)
    try:
        versions = select_versions(version_policy(named), available_versions(model_dir))
    except ConfigError as exc:
        raise ConfigError(f"model '{named.name}': {exc}") from exc

    # Before auto-complete, which may open (python: import) the model file.
    check_config_paths(named, model_dir, versions)
    config = normalize_config(
        named,
        model_dir,
        model_dir / str(versions[-1]),
        available_gpus,
        options.auto_complete,
        backends=backends,
    )
    validate_config(config, model_dir, available_gpus)
    spec = build_model_spec(config, model_dir)
    if spec.is_ensemble:
        check_ensemble_dataflow(spec)
    region_map = parse_region_map(spec) if spec.platform == REGION_MAP_PLATFORM else None
    return LoadedConfig(config=config, spec=spec, versions=tuple(versions), region_map=region_map)
