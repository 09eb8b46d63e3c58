"""The GPU proof kit's dry run, exactly as CI and the README run it: every section's code path on
CPU torch, the same report format as on a GPU. Speed checks are not judged on a CPU (ok: null)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("preprocessing", "packing", "zero_copies", "profile_and_plan", "memory_budgets")


@pytest.mark.timeout(900)
def test_gpu_check_dry_run_passes_and_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "gpu_check"
    finished = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--device", "cpu", "--quick", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=850, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert tuple(report["sections"]) == SECTIONS
    for name, section in report["sections"].items():
        assert "error" not in section and "skipped" not in section, (name, section)
        assert section["checks"], name
    assert report["verdict"] == {"errors": [], "failed_checks": []}
    # Correctness checks hold on CPU too; speed against the seed is left to the GPU (None).
    by_name = {c["check"]: c["ok"] for s in report["sections"].values() for c in s["checks"]}
    assert [ok for check, ok in by_name.items() if "outputs equal" in check] == [True, True]
    assert by_name["a model over its budget is refused with the reason"] is True
    assert report["sections"]["zero_copies"]["final_outputs_per_request"] == 7
    assert report["sections"]["profile_and_plan"]["devices_packed"] >= 1
    assert report["sections"]["profile_and_plan"]["gpu_memory_budgets_in_profile"]["resnet18"] == "256MiB"
    markdown = (out / "report.md").read_text()
    headings = ("## Checks", "## Preprocessing", "## Packing", "## Zero copies", "## Profile", "## GPU memory")
    for heading in headings:
        assert heading in markdown
    assert (out / "profile.json").is_file() and (out / "plan.md").is_file()
    # A GPU machine without ortools brings back the profile; the plan is finished here from it.
    (out / "plan.md").unlink()
    finished = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--plan-only", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    assert (out / "plan.md").is_file()
    assert json.loads((out / "report.json").read_text())["sections"]["profile_and_plan"]["devices_packed"] >= 1
