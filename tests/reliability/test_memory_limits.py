"""Memory limits: a per-model RSS budget for isolated python models (`max_rss_mb`), and the
server-wide `--max-memory` guard that sheds new requests with a 503 before the OOM killer comes.
Before: a model leaking 10 MB per call grew the server from 116 to 1,117 MB in 100 calls, unchecked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from packserve.cli import app
from packserve.core.memory_guard import SAMPLE_INTERVAL_S, server_rss_bytes
from packserve.errors import ModelExecutionError, ServerOverloadedError, UnavailableError
from packserve.frontends.status import http_status
from tests.reliability.faulty_models import TRIGGER, row, write_faulty_model
from tests.reliability.reliability_engine import EngineStarter, double, index_entry, write_python_add


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[EngineStarter]:
    starter = EngineStarter(tmp_path)
    yield starter
    await starter.stop_all()


async def test_leaking_isolated_model_is_stopped_at_its_budget(
    tmp_path: Path, engines: EngineStarter
) -> None:
    write_faulty_model(tmp_path, "leaky", "leak", isolation="process", max_rss_mb="200")
    write_python_add(tmp_path, "other")
    engine = await engines.start()
    failure = ""
    for _ in range(40):  # 20 MiB per call: the 200 MiB budget is passed well before this ends
        try:
            np.testing.assert_array_equal(await double(engine, "leaky", TRIGGER), row(TRIGGER * 2))
        except ModelExecutionError as exc:
            failure = str(exc)
            break
    assert "above its budget max_rss_mb=200" in failure
    state, reason = index_entry(engine, "leaky")
    assert state == "UNAVAILABLE" and "max_rss_mb=200" in reason
    with pytest.raises(UnavailableError, match="reload the model"):
        await double(engine, "leaky")
    np.testing.assert_array_equal(await double(engine, "other"), row(4.0))
    # Reloading gives it a fresh worker.
    await engine.repository.load("leaky")
    np.testing.assert_array_equal(await double(engine, "leaky"), row(4.0))


async def test_rss_budget_without_isolation_is_refused(tmp_path: Path, engines: EngineStarter) -> None:
    write_faulty_model(tmp_path, "leaky", "leak", max_rss_mb="200")
    engine = await engines.start()
    state, reason = index_entry(engine, "leaky")
    assert state == "UNAVAILABLE" and "needs 'isolation: process'" in reason


async def test_max_memory_sheds_new_requests_with_503(tmp_path: Path, engines: EngineStarter) -> None:
    write_python_add(tmp_path, "other")
    under = await engines.start(max_memory_bytes=server_rss_bytes() + (4 << 30))
    np.testing.assert_array_equal(await double(under, "other"), row(4.0))
    over = await engines.start(max_memory_bytes=1 << 20)  # 1 MiB: always above
    with pytest.raises(ServerOverloadedError, match="above --max-memory 1 MiB") as shed:
        await double(over, "other")
    assert http_status(shed.value) == 503


def test_max_memory_flag_rejects_a_bad_size(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(tmp_path), "--max-memory", "lots"])
    assert result.exit_code == 2
    assert "--max-memory" in result.output and "not understood" in result.output


async def test_max_memory_sheds_before_an_in_process_leak_grows_unbounded(
    tmp_path: Path, engines: EngineStarter
) -> None:
    write_faulty_model(tmp_path, "leaky", "leak")  # in-process: no budget of its own
    engine = await engines.start(max_memory_bytes=server_rss_bytes() + (150 << 20))
    shed = None
    for _ in range(30):  # 20 MiB per call: the guard trips after about 8
        try:
            await double(engine, "leaky", TRIGGER)
        except ServerOverloadedError as exc:
            shed = exc
            break
        await asyncio.sleep(SAMPLE_INTERVAL_S * 1.5)  # the guard samples at most this often
    assert shed is not None and "retry later" in str(shed)
