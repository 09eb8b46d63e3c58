"""`--http-address` / `--grpc-address` / `--metrics-address` bind each listener where asked, and a
SIGTERM turns readiness false at once while requests keep being served for `--drain-delay-secs`.
(tests/deploy/ checks the same through a generated pod at its own IP, where a namespace can be made.)"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.e2e_server import LiveServerFactory, direct_http_session

# Other loopback addresses: reachable here, and distinct from the 127.0.0.1 the rest binds.
GRPC_ADDRESS, METRICS_ADDRESS = "127.0.0.2", "127.0.0.3"


def _connects(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def _grpc_health(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _infer_ok(http_url: str) -> bool:
    client = httpclient.InferenceServerClient(http_url)
    try:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(a)
        return bool((client.infer("simple", inputs).as_numpy("OUTPUT0") == 2 * a).all())
    finally:
        client.close()


@pytest.mark.timeout(180)
def test_listeners_bind_their_addresses_and_sigterm_withdraws_readiness_first(
    live_server_factory: LiveServerFactory, example_repository: Path
) -> None:
    server = live_server_factory(
        example_repository,
        control_mode="explicit",
        load_models=["simple"],
        extra_args=[
            "--grpc-address", GRPC_ADDRESS, "--metrics-address", METRICS_ADDRESS,
            "--drain-delay-secs", "3", "--drain-timeout", "10",
        ],
    )  # fmt: skip
    assert _grpc_health(f"{GRPC_ADDRESS}:{server.grpc_port}") == "SERVING"
    assert not _connects("127.0.0.1", server.grpc_port)
    assert _connects(METRICS_ADDRESS, server.metrics_port)
    assert not _connects("127.0.0.1", server.metrics_port)
    session = direct_http_session()
    ready_url = f"{server.http_base}/v2/health/ready"
    assert session.get(ready_url, timeout=5).status_code == 200

    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    while session.get(ready_url, timeout=5).status_code == 200:
        assert time.monotonic() - sent < 5, "readiness still true 5 s after SIGTERM"
        time.sleep(0.02)
    withdrawn_after_s = time.monotonic() - sent
    # Not ready, yet serving: a request on a new connection still succeeds during the delay.
    assert _infer_ok(server.http_url)
    assert _grpc_health(f"{GRPC_ADDRESS}:{server.grpc_port}") == "NOT_SERVING"
    assert session.get(f"{server.http_base}/v2/health/live", timeout=5).status_code == 200
    assert withdrawn_after_s < 3, withdrawn_after_s
    assert server.terminate(timeout_s=30) == 0
    assert not _connects("127.0.0.1", server.http_port)
