"""scripts/gpu_wheelhouse.sh lists its wheels by hand: every dependency packserve declares (base and
the planning extra) must be on the GPU machine already, in that list, or named as left out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
REPO_ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-").replace(".", "-")


def test_wheelhouse_covers_packserve_dependencies() -> None:
    script = (REPO_ROOT / "scripts" / "gpu_wheelhouse.sh").read_text()
    on_machine = set(re.search(r"^# gpu-machine-has: (.*)$", script, re.MULTILINE)[1].split())  # type: ignore[index]
    left_out = set(re.search(r"^# left-out: (.*)$", script, re.MULTILINE)[1].split())  # type: ignore[index]
    listed = {_name(w) for w in re.findall(r'^\s+"([^"]+)"', script.split("wheels=(")[1].split(")")[0], re.MULTILINE)}
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    needed = {_name(r) for r in project["dependencies"]}
    needed |= {_name(r) for r in project["optional-dependencies"]["planning"]} - {"matplotlib", "kubernetes-validate"}
    uncovered = needed - on_machine - left_out - listed
    assert not uncovered, f"add these to scripts/gpu_wheelhouse.sh (or say the GPU machine has them): {uncovered}"
    assert len(listed) == script.split("wheels=(")[1].split(")")[0].count('"') // 2
