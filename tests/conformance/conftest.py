"""Fixtures of the vision conformance suite: one live `packserve serve` with the demo
`vision_stack` repository per module, and the reference packages (skipped when not installed:
scripts/install_conformance_refs.sh installs them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from packserve.demo.build import build_vision_stack
from packserve.errors import NotFoundError
from tests.e2e.e2e_server import LiveServer, start_live_server


@pytest.fixture(scope="session")
def vision_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    try:
        repository = build_vision_stack(tmp_path_factory.mktemp("vision-stack"), progress=False)
    except NotFoundError as missing:  # the weights packages are an optional install
        pytest.skip(f"demo weights not installed: {missing}")
    server = start_live_server(repository, tmp_path_factory.mktemp("server-logs"))
    yield server
    code = server.terminate()
    assert code == 0, server.log()[-4000:]


@pytest.fixture(scope="session")
def references_available() -> None:
    try:
        from tests.conformance.conformance_refs import engines

        engines()
    except ImportError as missing:
        pytest.skip(f"reference packages not importable ({missing}); run scripts/install_conformance_refs.sh")
