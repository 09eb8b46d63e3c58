"""The trace extension's settings answers, against the real Triton 2.51: same JSON, status codes
and error wording, and trace_count counting down as requests are traced. (packserve refuses an
unknown setting name or level that Triton silently ignores: not compared here.)"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.differential.conftest import TRITONSERVER, Server, _free_ports, _start, _stop
from tests.differential.twin_repository import SERVING_TWINS, build_twin_repository

BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
STEPS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v2/trace/setting", None),
    ("GET", "/v2/models/simple/trace/setting", None),
    ("POST", "/v2/models/simple/trace/setting", {"trace_rate": "5"}),
    ("GET", "/v2/models/simple/trace/setting", None),
    ("POST", "/v2/models/simple/trace/setting", {"trace_rate": None}),
    ("POST", "/v2/trace/setting", {"trace_rate": "abc"}),
    ("POST", "/v2/trace/setting", {"trace_count": "-5"}),
    ("POST", "/v2/trace/setting", {"trace_file": "/tmp/elsewhere.json"}),
    ("GET", "/v2/models/nosuch/trace/setting", None),
    ("POST", "/v2/models/simple/trace/setting", {"trace_level": ["TIMESTAMPS"], "trace_rate": "0"}),
    ("POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "3"}),
    ("INFER", "/v2/models/python_add/infer", BODY),
    ("INFER", "/v2/models/python_add/infer", BODY),
    ("GET", "/v2/trace/setting", None),
    ("INFER", "/v2/models/python_add/infer", BODY),
    ("INFER", "/v2/models/python_add/infer", BODY),
    ("GET", "/v2/trace/setting", None),
]


def _wait_ready(server: Server, timeout_s: float = 180.0) -> None:
    for _ in range(int(timeout_s / 0.25)):
        if server.process.poll() is not None:
            break
        try:
            urls = [f"{server.base}/v2/models/{m}/ready" for m in ("simple", "python_add")]
            if all(requests.get(url, timeout=1).status_code == 200 for url in urls):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} did not become ready; log:\n{server.log.read_text()[-4000:]}")


def _run(server: Server) -> list[tuple[int, Any]]:
    answers: list[tuple[int, Any]] = []
    for method, path, body in STEPS:
        url = f"{server.base}{path}"
        reply = requests.get(url, timeout=10) if method == "GET" else requests.post(url, json=body, timeout=30)
        if method == "INFER":
            assert reply.status_code == 200, reply.text
            continue
        document = reply.json()
        document.pop("trace_file", None)  # each server has its own file
        answers.append((reply.status_code, document))
    return answers


def test_trace_settings_answer_as_triton(tmp_path: Path) -> None:
    repository = build_twin_repository(tmp_path / "repository", SERVING_TWINS)
    t_http, t_grpc, t_metrics, p_http, p_grpc, p_metrics = _free_ports(6)
    triton = _start(
        "triton",
        [str(TRITONSERVER), "--model-repository", str(repository), "--trace-config", f"triton,file={tmp_path / 't.json'}",
         "--http-port", str(t_http), "--grpc-port", str(t_grpc), "--metrics-port", str(t_metrics),
         "--backend-directory", str(TRITONSERVER.parent.parent / "backends")],
        t_http, tmp_path / "triton.log",
    )  # fmt: skip
    packserve = _start(
        "packserve",
        [sys.executable, "-c", "from packserve.cli import main; main()", "serve", "--model-repository", str(repository),
         "--trace-config", f"triton,file={tmp_path / 'p.json'}",
         "--http-port", str(p_http), "--grpc-port", str(p_grpc), "--metrics-port", str(p_metrics)],
        p_http, tmp_path / "packserve.log",
    )  # fmt: skip
    try:
        _wait_ready(triton)
        _wait_ready(packserve)
        expected, got = _run(triton), _run(packserve)
        for step, (want, have) in enumerate(zip(expected, got, strict=True)):
            assert have == want, f"answer {step}: packserve {have} != triton {want}"
    finally:
        _stop(triton)
        _stop(packserve)
