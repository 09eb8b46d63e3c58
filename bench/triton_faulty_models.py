"""What the reference Triton 2.51 (.tools/tritonserver) does with the faulty python models of
tests/reliability/faulty_models.py, for comparison with bench/reliability_probes.py.

    .venv/bin/python bench/triton_faulty_models.py

A python model that calls os._exit(1) or segfaults on one request, then 12 normal requests one
second apart; then SIGTERM with --exit-timeout-secs 2 while a request hangs in execute. Prints
what the clients get, whether the model stays READY and the server's exit code and time.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.reliability.faulty_models import TRIGGER, write_faulty_model

TRITONSERVER = Path(__file__).resolve().parents[1] / ".tools" / "tritonserver" / "bin" / "tritonserver"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def main() -> None:
    if not TRITONSERVER.exists():
        raise SystemExit(f"{TRITONSERVER} is missing (the differential tests install it)")
    work = Path(tempfile.mkdtemp(prefix="triton-faulty-"))
    for fault in ("exit", "segv", "hang"):
        write_faulty_model(work / "models", f"{fault}_model", fault)
    http, grpc, metrics = free_ports(3)
    command = [
        str(TRITONSERVER), "--model-repository", str(work / "models"),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--backend-directory", str(TRITONSERVER.parent.parent / "backends"), "--exit-timeout-secs", "2",
    ]  # fmt: skip
    with (work / "triton.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    session = requests.Session()
    session.trust_env = False
    for _ in range(300):
        try:
            if session.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)

    def call(model: str, value: float) -> tuple[Any, str]:
        body = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [value, 0, 0, 0]}]}
        try:
            reply = session.post(f"{base}/v2/models/{model}/infer", json=body, timeout=120)
            return reply.status_code, reply.text[:120]
        except requests.RequestException as exc:
            return "no answer", type(exc).__name__

    for model in ("exit_model", "segv_model"):
        print(model, "fault:", call(model, TRIGGER))
        ready = session.get(f"{base}/v2/models/{model}/ready", timeout=5).status_code
        print(model, "server alive:", process.poll() is None, "model ready status:", ready)
        later = []
        for _ in range(12):
            time.sleep(1)
            later.append(call(model, 1.0)[0])
        print(model, "normal requests 1..12 s later:", later)
    hung: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: hung.update(answer=call("hang_model", TRIGGER)))
    caller.start()
    time.sleep(1.5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(60)
    print(
        f"SIGTERM, --exit-timeout-secs 2, a request hung: exit {code} after {time.monotonic() - started:.2f}s"
    )
    caller.join(10)
    print("the hung client got:", hung.get("answer"))


if __name__ == "__main__":
    sys.exit(main())
