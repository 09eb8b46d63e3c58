"""Load for the pipeline benchmark: KServe v2 HTTP with the binary-data extension (one JPEG as a
BYTES tensor per request), understood alike by packserve and Triton.

Closed loop: C threads, each sends its next request as soon as the previous answer arrives.
Open loop: requests are due at a fixed rate; each is sent by a free thread of a large pool, and
its latency counts from the time it was due (a late send is the server's delay too, as the
client sees it).
"""

from __future__ import annotations

import http.client
import json
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np


def infer_body(model_outputs: list[str], image: bytes) -> tuple[bytes, dict[str, str]]:
    tensor = struct.pack("<I", len(image)) + image
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE",
                    "shape": [1, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(tensor)},
                }
            ],
            "outputs": [{"name": name} for name in model_outputs],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + tensor, headers


@dataclass
class LoadResult:
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answered: int = 0  # every successful answer, warm-up included (for CPU per request)

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")

    def summary(self) -> dict[str, float | int]:
        return {
            "requests_per_s": round(self.throughput, 2),
            "p50_ms": round(self.percentile_ms(50), 1),
            "p99_ms": round(self.percentile_ms(99), 1),
            "requests": len(self.latencies_s),
            "errors": len(self.errors),
        }


class _Sender:
    def __init__(self, url: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        host, port = url.split(":")
        self._connection = http.client.HTTPConnection(host, int(port), timeout=120)
        self._path, self._body, self._headers = path, body, headers

    def send(self) -> str | None:
        """One request; None when it succeeded, else what went wrong."""
        try:
            self._connection.request("POST", self._path, self._body, self._headers)
            response = self._connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            return f"{type(exc).__name__}: {exc}"
        return None if response.status == 200 else f"HTTP {response.status}: {payload[:200]!r}"

    def close(self) -> None:
        self._connection.close()


def closed_loop(
    url: str, model: str, outputs: list[str], image: bytes, concurrency: int, warmup_s: float, seconds: float
) -> LoadResult:
    body, headers = infer_body(outputs, image)
    path = f"/v2/models/{model}/infer"
    start = time.monotonic() + warmup_s
    end = start + seconds
    result = LoadResult(seconds)
    lock = threading.Lock()

    def client() -> None:
        sender = _Sender(url, path, body, headers)
        try:
            while (sent := time.monotonic()) < end:
                error = sender.send()
                done = time.monotonic()
                if error is None:
                    with lock:
                        result.answered += 1
                if start <= done <= end:  # completions inside the window
                    with lock:
                        if error is None:
                            result.latencies_s.append(done - sent)
                        else:
                            result.errors.append(error)
        finally:
            sender.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(warmup_s + seconds + 180)
    return result


def open_loop(
    url: str, model: str, outputs: list[str], image: bytes, rate: float, seconds: float, pool: int = 64
) -> LoadResult:
    """Requests due every 1/rate s for `seconds`; latency from the due time."""
    body, headers = infer_body(outputs, image)
    path = f"/v2/models/{model}/infer"
    count = max(1, int(rate * seconds))
    first = time.monotonic() + 0.5
    due = [first + i / rate for i in range(count)]
    next_index = 0
    lock = threading.Lock()
    result = LoadResult(seconds)

    def client() -> None:
        nonlocal next_index
        sender = _Sender(url, path, body, headers)
        try:
            while True:
                with lock:
                    if next_index >= count:
                        return
                    when = due[next_index]
                    next_index += 1
                delay = when - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                error = sender.send()
                done = time.monotonic()
                with lock:
                    if error is None:
                        result.answered += 1
                        result.latencies_s.append(done - when)
                    else:
                        result.errors.append(error)
        finally:
            sender.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(pool)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 300)
    return result
