"""`packserve profile --device <device>` on the packed repository, then `packserve plan` for the
seed's load (25M requests/day, peak 3x, p99 100 ms) from that profile, both run as a user runs
them (the CLI, in a child process)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.gpu_check import repository as repo
from bench.gpu_check.common import Settings, packserve_argv
from packserve.backends.gpu_budget import device_memory_bytes

LOAD, PEAK, P99 = "25M/day", "3", "100ms"
QUICK_P99 = "2s"  # the dry run's CPU cannot meet 100 ms; it checks the commands, not the figure


def _cli(arguments: list[str], timeout_s: float, cuda: bool = False) -> str:
    finished = subprocess.run(
        [*packserve_argv(cuda), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(
            f"packserve {arguments[0]} exited {finished.returncode}:\n{finished.stderr[-3000:]}"
        )
    return finished.stdout


def run(settings: Settings) -> dict[str, Any]:
    repository = settings.work / "packed"
    if not repository.is_dir():
        repository = repo.write_packed(settings.work, settings.nets_dir, settings.shape, settings.device, 2)
    # Straight into OUT: it comes back from the GPU machine, and a plan can be made from it anywhere.
    profile_path = settings.out / "profile.json"
    profile_command = [
        "profile", "--model-repository", str(repository), "--models", repo.ENSEMBLE,
        "--device", settings.device, "--batch-sizes", "1" if settings.quick else "1,8,32",
        "--instances", "1", "--requests", "4" if settings.quick else "60", "--out", str(profile_path),
    ]  # fmt: skip
    _cli(profile_command, 300, settings.cuda)
    profile = json.loads(profile_path.read_text())
    models = {
        m["name"]: {
            "best_throughput_per_s": round(max((p["throughput_per_s"] for p in m["points"]), default=0.0), 1),
            "memory_bytes": max((p["memory_bytes"] for p in m["points"]), default=0),
        }
        for m in profile["models"]
    }
    result: dict[str, Any] = {
        "profile_device": profile["device"],
        "profile_device_name": profile["device_name"],
        "profile_command": "packserve " + " ".join(profile_command),
        "device_memory_bytes": device_memory_bytes(settings.device),
        "quick": settings.quick,
        "models": models,
        "gpu_memory_budgets_in_profile": profile.get("extra", {}).get("gpu_memory_budgets"),
    }
    if importlib.util.find_spec("ortools") is None:
        # The GPU machine's wheelhouse has no room for ortools (scripts/gpu_wheelhouse.sh).
        result["plan_pending"] = (
            f"ortools missing here: run python -m bench.gpu_check --plan-only {settings.out}"
        )
        result["checks"] = [
            _check(settings.device, settings.quick, None, profile["device"] == settings.device)
        ]
        return result
    return result | plan(result, settings.out)


def _check(device: str, quick: bool, said: str | None, ok: bool | None) -> dict[str, Any]:
    p99 = QUICK_P99 if quick else P99
    return {
        "check": f"profile on {device} and a plan for {LOAD}, peak {PEAK}x, p99 {p99}",
        "ok": ok,
        "figures": {"plan": said or "pending: --plan-only"},
    }


def plan(section: dict[str, Any], out: Path) -> dict[str, Any]:
    """`packserve plan` from OUT/profile.json for the seed's load; writes OUT/plan.md."""
    plan_dir = out / "plan"
    plan_command = [
        "plan", "--profile", str(out / "profile.json"), "--load", LOAD, "--peak-factor", PEAK,
        "--p99", QUICK_P99 if section["quick"] else P99, "--gpu-memory", str(section["device_memory_bytes"]),
        "--out", str(plan_dir),
    ] + (["--no-simulate"] if section["quick"] else [])  # fmt: skip
    said = _cli(plan_command, 300).strip().splitlines()[-1]
    shutil.copy(plan_dir / "report.md", out / "plan.md")
    shutil.rmtree(plan_dir, ignore_errors=True)  # at most 8 files come back from a GPU machine
    # The CLI's summary line (packserve/cli/planning_commands.py `_summary`).
    devices = re.search(
        r"devices at peak: lower bound (\d+), packed (\d+) \(x[\d.]+ the bound\), "
        r"one model per pod (\d+)",
        said,
    )
    profiled_on = section["profile_device"]
    return {
        "plan_command": "packserve " + " ".join(plan_command),
        "plan_says": said.split(" -> ")[0],
        "devices_lower_bound": int(devices.group(1)) if devices else None,
        "devices_packed": int(devices.group(2)) if devices else None,
        "devices_one_model_each": int(devices.group(3)) if devices else None,
        "checks": [_check(profiled_on, section["quick"], said.split(" -> ")[0], devices is not None)],
    }
