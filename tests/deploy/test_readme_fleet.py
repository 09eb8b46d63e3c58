"""README doc-test: every command of "Sizing a fleet" runs as written and writes what it says."""

from __future__ import annotations

import yaml

from tests.deploy.deploy_fleet import Fleet, readme_section_commands


def test_every_sizing_a_fleet_command_runs_as_written(fleet: Fleet) -> None:
    commands = readme_section_commands("Sizing a fleet")
    assert len(commands) >= 3 and any("deploy k8s" in c for c in commands)
    assert [run.command for run in fleet.runs] == commands, fleet.failure()
    assert fleet.ok, fleet.failure()
    out = fleet.workdir / "fleet"
    for name in ("profile.json", "plan/plan.json", "plan/report.md", "k8s/packserve.yaml"):
        assert (out / name).is_file(), f"{name} was not written"
    kinds = {m["kind"] for m in yaml.safe_load_all((out / "k8s/packserve.yaml").read_text())}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds
    adapter = yaml.safe_load((out / "k8s/prometheus-adapter-values.yaml").read_text())
    assert adapter["rules"]["custom"][0]["name"]["as"] == "packserve_queue_duration_us_per_request"
