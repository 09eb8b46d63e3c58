"""The GPU proof kit: `python -m bench.gpu_check [--device cuda:0] [--quick] OUT` (scripts/gpu_check.sh).

Runs every section in one process and writes OUT/report.json and OUT/report.md. A section that
raises is recorded with its error and the rest still run. Exit status: 0 when no section raised
and no check failed; 1 otherwise. Checks against the seed's figures are judged only on a GPU
(`ok: null` on CPU: the dry run proves the code paths, not the speed).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.gpu_check import budgets, copies, packing, planning, preprocess
from bench.gpu_check import repository as repo
from bench.gpu_check.common import Settings, find_perf_analyzer, jpeg_set
from bench.gpu_check.report import render

SECTIONS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "preprocessing": preprocess.run,
    "packing": packing.run,
    "zero_copies": copies.run,
    "profile_and_plan": planning.run,
    "memory_budgets": budgets.run,
}


def _environment(settings: Settings) -> dict[str, Any]:
    import numpy
    import torch

    import packserve

    gpu = torch.cuda.get_device_name(settings.device) if settings.cuda else None
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    return {
        "device": settings.device,
        "gpu_name": gpu,
        "quick": settings.quick,
        "cpu_cores": settings.cores,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "packserve": getattr(packserve, "__version__", "?"),
        "perf_analyzer": settings.perf_analyzer,
        "load_average": load,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _write(out: Path, report: dict[str, Any], quiet: bool = False) -> int:
    checks = [c for s in report["sections"].values() for c in s.get("checks", [])]
    failed = [c["check"] for c in checks if c["ok"] is False]
    errors = [n for n, s in report["sections"].items() if "error" in s]
    report["verdict"] = {"errors": errors, "failed_checks": failed}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    (out / "report.md").write_text(render(report), encoding="utf-8")
    if not quiet:
        print(f"report: {out / 'report.md'} ({report['seconds']} s); errors {errors}; failed checks {failed}")
    return 1 if errors or failed else 0


def plan_only(out: Path) -> int:
    """Finish a GPU run whose machine had no ortools: plan here from the profile it brought back."""
    report = json.loads((out / "report.json").read_text())
    section = report["sections"]["profile_and_plan"]
    section.pop("plan_pending", None)
    section.update(planning.plan(section, out))
    return _write(out, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__)
    parser.add_argument("out", type=Path, help="folder for report.json and report.md")
    parser.add_argument("--device", default="cuda:0", help="cuda:N, or cpu for the dry run")
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs (the CI dry run)")
    parser.add_argument(
        "--perf-analyzer", help="perf_analyzer binary (else $PERF_ANALYZER, .tools/bin, PATH)"
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset to run")
    parser.add_argument(
        "--plan-only", action="store_true", help="plan from OUT/profile.json of an earlier run"
    )
    args = parser.parse_args(argv)
    if args.plan_only:
        return plan_only(args.out)
    if args.device != "cpu" and not args.device.startswith("cuda:"):
        parser.error(f"--device must be cpu or cuda:N, got {args.device!r}")
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    settings = Settings(args.device, args.quick, args.out, work, find_perf_analyzer(args.perf_analyzer))
    settings.shape = repo.QUICK if args.quick else repo.FULL
    started = time.perf_counter()
    report: dict[str, Any] = {"environment": _environment(settings), "sections": {}}
    settings.nets_dir = work / "nets"
    report["nets"] = {
        "parameters": repo.build_nets(settings.nets_dir, settings.shape),
        "shape": vars(settings.shape),
    }
    settings.sample_jpeg = jpeg_set(*((320, 240) if args.quick else (640, 480)), 1)[0]
    for name in args.sections.split(","):
        section_start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            result = SECTIONS[name](settings)
        except Exception as exc:
            result = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-4000:],
                "checks": [],
            }
        result["seconds"] = round(time.perf_counter() - section_start, 1)
        report["sections"][name] = result
        print(
            f"   {result['seconds']} s" + (f"  ERROR {result['error']}" if "error" in result else ""),
            flush=True,
        )
        # Written after every section: a run cut short by the GPU's time limit still reports.
        report["seconds"] = round(time.perf_counter() - started, 1)
        _write(args.out, report, quiet=True)
    shutil.rmtree(work, ignore_errors=True)
    return _write(args.out, report)


if __name__ == "__main__":
    sys.exit(main())
