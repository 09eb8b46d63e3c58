"""tritonserver's flags: the docs table covers every flag of the real 2.51 binary, the supported
ones exist on `packserve serve`, and both servers answer alike when started with the same flags."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import typer.main

from packserve.cli import app
from tests.differential.conftest import TRITONSERVER, Server, _free_ports, _start, _stop
from tests.differential.twin_repository import SERVING_TWINS, build_twin_repository
from tests.frontends.grpc.h2_raw_client import idle_connection_events, ping_burst

DOC = Path(__file__).resolve().parents[2] / "docs" / "triton-flags.md"


def _triton_flags() -> set[str]:
    text = subprocess.run([str(TRITONSERVER), "--help"], capture_output=True, text=True, check=False)
    return set(re.findall(r"^  (--[a-z0-9-]+)", text.stdout + text.stderr, re.MULTILINE))


def _doc_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `--"):
            continue
        cells = line.split("|")
        for flag in re.findall(r"`(--[a-z0-9-]+)", cells[1]):
            assert flag not in rows, f"{flag} is listed twice"
            rows[flag] = cells[2].strip()
    return rows


def test_the_table_lists_every_flag_of_the_real_binary() -> None:
    flags = _triton_flags()
    assert len(flags) >= 80
    assert set(_doc_rows()) == flags


def test_supported_flags_exist_on_serve() -> None:
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = {opt for param in command.params for opt in param.opts} | {"--help"}
    supported = [flag for flag, status in _doc_rows().items() if status.startswith(("supported", "alias"))]
    assert len(supported) >= 25
    assert [flag for flag in supported if flag not in options] == []


def _second_repository(root: Path, first: Path) -> Path:
    """`python_add` again (a duplicate name) and `simple_alt`, whose configs/alt.pbtxt allows
    batches of 4 where its config.pbtxt allows 8."""
    shutil.copytree(first / "python_add", root / "python_add")
    shutil.copytree(first / "simple", root / "simple_alt")
    config = (
        (root / "simple_alt" / "config.pbtxt").read_text().replace('name: "simple"', 'name: "simple_alt"')
    )
    (root / "simple_alt" / "config.pbtxt").write_text(config)
    (root / "simple_alt" / "configs").mkdir()
    (root / "simple_alt" / "configs" / "alt.pbtxt").write_text(
        config.replace("max_batch_size: 8", "max_batch_size: 4")
    )
    return root


def _wait_live(server: Server, timeout_s: float = 180.0) -> None:
    for _ in range(int(timeout_s / 0.25)):
        if server.process.poll() is not None:
            break
        try:
            if requests.get(f"{server.base}/v2/health/live", timeout=1).status_code == 200 and (
                requests.get(f"{server.base}/v2/models/simple_alt/ready", timeout=1).status_code == 200
            ):
                return
        except requests.ConnectionError:
            pass
        subprocess.run(["sleep", "0.25"], check=False)
    raise RuntimeError(f"{server.name} did not start; log:\n{server.log.read_text()[-4000:]}")


def _answers(server: Server) -> dict[str, object]:
    return {
        "name": requests.get(f"{server.base}/v2", timeout=5).json()["name"],
        "ready": requests.get(f"{server.base}/v2/health/ready", timeout=5).status_code,
        "simple_alt batch": requests.get(f"{server.base}/v2/models/simple_alt/config", timeout=5).json()[
            "max_batch_size"
        ],
        "python_add ready": requests.get(f"{server.base}/v2/models/python_add/ready", timeout=5).status_code,
        "simple ready": requests.get(f"{server.base}/v2/models/simple/ready", timeout=5).status_code,
    }


@pytest.mark.parametrize("strict", ["false", "true"])
def test_same_flags_same_answers(tmp_path: Path, strict: str) -> None:
    first = build_twin_repository(tmp_path / "a", SERVING_TWINS)
    second = _second_repository(tmp_path / "b", first)
    flags = [
        "--model-repository", str(first), "--model-repository", str(second), "--id", "twin",
        "--model-config-name", "alt", f"--strict-readiness={strict}", "--exit-on-error=false",
        "--log-verbose=1", "--log-format", "ISO8601", "--allow-metrics=false",
    ]  # fmt: skip
    triton, _, packserve, _ = _start_both(tmp_path, flags, _wait_live)
    try:
        assert _answers(packserve) == _answers(triton)
    finally:
        _stop(triton)
        _stop(packserve)


def _wait_listening(server: Server, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if requests.get(f"{server.base}/v2/health/live", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.25)
    raise RuntimeError(f"{server.name} did not start; log:\n{server.log.read_text()[-4000:]}")


def _start_both(
    tmp_path: Path, flags: list[str], wait: Callable[[Server], None] = _wait_listening
) -> tuple[Server, int, Server, int]:
    """tritonserver and packserve started with the same flags, once `wait` says both are up; with
    their gRPC ports."""
    t_http, t_grpc, p_http, p_grpc = _free_ports(4)
    triton = _start(
        "triton",
        [str(TRITONSERVER), *flags, "--http-port", str(t_http), "--grpc-port", str(t_grpc),
         "--backend-directory", str(TRITONSERVER.parent.parent / "backends")],
        t_http, tmp_path / "triton.log",
    )  # fmt: skip
    packserve = _start(
        "packserve",
        [sys.executable, "-c", "from packserve.cli import main; main()", "serve", *flags,
         "--http-port", str(p_http), "--grpc-port", str(p_grpc)],
        p_http, tmp_path / "packserve.log",
    )  # fmt: skip
    try:
        wait(triton)
        wait(packserve)
    except BaseException:
        _stop(triton)
        _stop(packserve)
        raise
    return triton, t_grpc, packserve, p_grpc


def _empty_repository(tmp_path: Path) -> list[str]:
    (tmp_path / "empty").mkdir(exist_ok=True)
    return ["--model-repository", str(tmp_path / "empty"), "--allow-metrics=false"]


def test_grpc_ping_policing_matches_triton(tmp_path: Path) -> None:
    """The same --grpc-http2-max-ping-strikes on both: the same PING ACKs, then the same GOAWAY."""
    flags = [*_empty_repository(tmp_path), "--grpc-http2-max-ping-strikes", "1"]
    triton, t_grpc, packserve, p_grpc = _start_both(tmp_path, flags)
    try:
        for count in (2, 3, 5):  # within the limit (1 free, 1 strike), one past it, more in one read
            theirs, ours = ping_burst(t_grpc, count), ping_burst(p_grpc, count)
            assert ours == theirs, count
        assert theirs[-1] == ("GOAWAY", 0xB, b"too_many_pings")
    finally:
        _stop(triton)
        _stop(packserve)


def test_grpc_keepalive_and_connection_age_match_triton(tmp_path: Path) -> None:
    """Keepalive PINGs every 200 ms on an idle connection (permitted), then the connection aged out
    after 1.5 s (+-10%): as many PINGs, the same final GOAWAY, closed at about the same time."""
    flags = [
        *_empty_repository(tmp_path), "--grpc-keepalive-time", "200", "--grpc-keepalive-permit-without-calls", "true",
        "--grpc-max-connection-age", "1500",
    ]  # fmt: skip
    triton, t_grpc, packserve, p_grpc = _start_both(tmp_path, flags)
    try:
        theirs, ours = idle_connection_events(t_grpc, 3.0), idle_connection_events(p_grpc, 3.0)
    finally:
        _stop(triton)
        _stop(packserve)
    for events in (theirs, ours):
        pings = [t for t, kind, _, _ in events if kind == "PING" and t < 1.2]
        assert 4 <= len(pings) <= 7, events
        goaways = [(last, code) for _, kind, last, code in events if kind == "GOAWAY"]
        assert goaways and goaways[-1] == (0, 0), events  # the last: no stream served, NO_ERROR
        assert events[-1][1] == "closed" and 1.2 < events[-1][0] < 2.2, events
    their_pings = sum(kind == "PING" and t < 1.2 for t, kind, _, _ in theirs)
    our_pings = sum(kind == "PING" and t < 1.2 for t, kind, _, _ in ours)
    assert abs(their_pings - our_pings) <= 1
