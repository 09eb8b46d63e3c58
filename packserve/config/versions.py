"""Model versions: the numbered folders of a model, and which of them a version policy serves."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from packserve.errors import ConfigError
from packserve.model_spec import VersionPolicy

# Triton ignores folders that are not a number or that start with 0 ("01", "0").
_VERSION_FOLDER = re.compile(r"[1-9][0-9]*")


def available_versions(model_dir: Path) -> list[int]:
    """The versions present in `model_dir`, ascending."""
    try:
        entries = list(model_dir.iterdir())
    except OSError as exc:
        raise ConfigError(f"cannot list model folder '{model_dir}': {exc}") from exc
    return sorted(
        int(entry.name) for entry in entries if _VERSION_FOLDER.fullmatch(entry.name) and entry.is_dir()
    )


def select_versions(policy: VersionPolicy, available: Sequence[int]) -> list[int]:
    """The versions to serve, ascending (newest last). ConfigError when none can be served."""
    present = sorted(set(available))
    if not present:
        raise ConfigError("no model versions found: expected numbered version folders such as '1/'")
    if policy.kind == "all":
        return present
    if policy.kind == "latest":
        if policy.latest_num_versions < 1:
            raise ConfigError(
                f"version_policy latest num_versions must be >= 1, got {policy.latest_num_versions}"
            )
        return present[-policy.latest_num_versions :]
    if policy.kind == "specific":
        wanted = sorted(set(policy.specific_versions))
        if not wanted:
            raise ConfigError("version_policy specific lists no versions")
        missing = [version for version in wanted if version not in present]
        if missing:
            raise ConfigError(
                f"version_policy specific asks for version(s) {missing} but the model folder has {present}"
            )
        return wanted
    raise ConfigError(f"unknown version policy kind '{policy.kind}' (expected latest, all or specific)")
