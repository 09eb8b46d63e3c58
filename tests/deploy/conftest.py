"""Fixtures for the deployment tests. `fleet` runs the README's "Sizing a fleet" commands once per
session; the README doc-test checks them, the pod and Prometheus tests deploy what they wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.deploy_fleet import Fleet, run_fleet


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return run_fleet(tmp_path_factory.mktemp("readme-fleet"))


@pytest.fixture(scope="session")
def fleet_dir(fleet: Fleet) -> Path:
    """The folder the README's commands wrote into (fails the test if any of them failed)."""
    if not fleet.ok:
        pytest.fail(f"README 'Sizing a fleet' commands failed: {fleet.failure()}")
    return fleet.workdir / "fleet"
