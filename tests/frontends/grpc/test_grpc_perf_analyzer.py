"""perf_analyzer 2.51 (installed by scripts/install_perf_analyzer.sh) against the gRPC front end:
plain and streaming, and it must print the server-side statistics it asks the server for."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from packserve.core.engine import Engine, EngineOptions
from packserve.examples.simple_repository import build_simple_repository
from tests.frontends.grpc.grpc_server_thread import ServerThread

PERF_ANALYZER = Path(__file__).resolve().parents[3] / ".tools" / "bin" / "perf_analyzer"

pytestmark = pytest.mark.skipif(
    not PERF_ANALYZER.is_file(), reason="perf_analyzer not installed (run scripts/install_perf_analyzer.sh)"
)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = build_simple_repository(Path(tmp_path_factory.mktemp("repository")))
    running = ServerThread()
    engine = running.call(Engine.start(EngineOptions(model_repository=root)))
    try:
        running.start(engine)
        yield running.url
    finally:
        running.call(engine.shutdown(5.0))
        running.stop()


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "streaming"])
def test_perf_analyzer_measures_and_reads_server_statistics(url: str, streaming: bool) -> None:
    command = [
        str(PERF_ANALYZER),
        "-m",
        "simple",
        "-i",
        "grpc",
        "-u",
        url,
        "--concurrency-range",
        "2",
        # Few requests per window and a loose stability bound: this checks the protocol, not speed.
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        "40",
        "--stability-percentage",
        "1000",
        "--max-trials",
        "5",
    ]
    if streaming:
        command.append("--streaming")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    assert "Server:" in output, output
    assert "Successful request count:" in output, output
    assert "error" not in output.lower(), output
