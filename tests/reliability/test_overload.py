"""Overload (issue 10): ten times what a 10 ms model can serve, no max_queue_size in its config.
The model's default bound refuses the excess at once with 503 while the admitted requests are
served, and health probes keep answering. Speeds are measured by bench/, not asserted here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from tests.e2e.e2e_server import LiveServer, direct_http_session
from tests.reliability.hostile import get

BODY = {"inputs": [{"name": "IN", "shape": [1], "datatype": "FP32", "data": [1.0]}]}


@pytest.fixture(scope="module")
def server(reliability_servers: Callable[..., LiveServer], hostile_repository: Path) -> LiveServer:
    return reliability_servers(hostile_repository)


def test_overload_gets_fast_503_and_health_stays_up(server: LiveServer) -> None:
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        http = direct_http_session()
        for _ in range(8):
            answer = http.post(f"{server.http_base}/v2/models/slow/infer", json=BODY, timeout=60)
            with lock:
                statuses.append(answer.status_code)
                if answer.status_code != 200:
                    errors.append(answer.json()["error"])

    # 160 clients in a closed loop against 1 instance x 10 ms: far past the default bound of 64.
    threads = [threading.Thread(target=client, daemon=True) for _ in range(160)]
    for thread in threads:
        thread.start()
    probes = [get(server.http_port, "/v2/health/ready")[0] for _ in range(5)]
    grpc_live = grpcclient.InferenceServerClient(server.grpc_url).is_server_live()
    for thread in threads:
        thread.join(timeout=120)
    assert probes == [200] * 5 and grpc_live
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) > 0 and statuses.count(503) > 0, statuses
    assert all("queue is full" in error and "limit 64" in error for error in errors), errors[:3]
    assert get(server.http_port, "/v2/models/slow/ready")[0] == 200
