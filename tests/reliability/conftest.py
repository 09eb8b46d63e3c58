"""Fixtures of the reliability suite (tests/reliability/hostile.py holds the harness itself).

`hostile_repository`: the example repository plus the `slow` (10 ms) and `big_answer` (4 MiB)
python models. `reliability_servers`: starts live servers for one module and, at its end, SIGTERMs
each and checks it exited 0, so a probe that leaves the server broken fails the module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_server import LiveServer, stop_all_cleanly
from tests.reliability.hostile import build_hostile_repository, start_server


@pytest.fixture(scope="session")
def hostile_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hostile_repository(tmp_path_factory.mktemp("hostile-repository"))


@pytest.fixture(scope="module")
def reliability_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveServer]]:
    log_dir = tmp_path_factory.mktemp("reliability-logs")
    started: list[LiveServer] = []

    def start(repository: Path, **kwargs: Any) -> LiveServer:
        server = start_server(repository, log_dir, **kwargs)
        started.append(server)
        return server

    yield start
    stop_all_cleanly(started)
