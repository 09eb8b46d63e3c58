"""What a pipeline costs when served: its CPU per request through the real HTTP front end.

The profiler measures the engine in-process; a served request also costs the HTTP front end
(parsing, request decode, response encode), the asyncio server around the engine and the work of
the server's other threads. To measure that, the profiler's own engine is put behind the real
`HttpServer` on a free local port and driven by blocking KServe v2 clients (binary tensors, as
`perf_analyzer` and `tritonclient` send them) in threads of this process. The server's CPU is the
process's CPU time less what the client threads spent, each counted with `time.thread_time` in the
thread itself - so the figure is the serving process's alone, as a separate server would use.

Threading: `measure_served` runs on the engine's event loop; the clients block in executor threads
(one per request in flight) while the loop serves them.
"""

from __future__ import annotations

import asyncio
import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from packserve.core.engine import Engine
from packserve.errors import InvalidArgumentError, UnavailableError
from packserve.frontends.http.server import HttpServer
from packserve.planning.formats.profile_schema import ServedPoint

_HOST = "127.0.0.1"
_TIMEOUT_S = 120.0  # one request; a demo pipeline takes well under a second


def request_body(engine: Engine, model: str, inputs: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """A KServe v2 binary-extension infer request for `model` with these tensors, asking for every
    output in binary: the body and its JSON header length (None when all of it is JSON)."""
    metadata = engine.model_metadata(model)
    wire = {t.name: t.datatype.wire_name for t in metadata.inputs}
    missing = sorted(set(wire) - set(inputs))
    if missing:
        raise InvalidArgumentError(f"model '{model}': no data for input '{missing[0]}' to send over HTTP")
    encoded = []
    for name, array in inputs.items():
        tensor = InferInput(name, list(array.shape), wire[name])
        tensor.set_data_from_numpy(np.asarray(array), binary_data=True)
        encoded.append(tensor)
    outputs = [InferRequestedOutput(t.name, binary_data=True) for t in metadata.outputs]
    body, header_length = InferenceServerClient.generate_request_body(encoded, outputs=outputs)
    return bytes(body), header_length


async def measure_served(
    engine: Engine,
    model: str,
    inputs: dict[str, np.ndarray],
    requests: int,
    concurrency: int = 1,
    warmup_requests: int = 2,
) -> ServedPoint:
    """Serve `model` through the HTTP front end and keep `concurrency` requests in flight (closed
    loop) for `requests` requests after `warmup_requests` unmeasured ones."""
    if requests < 1 or concurrency < 1:
        raise InvalidArgumentError(
            f"served measurement of '{model}' needs at least one request and one client, "
            f"got {requests} requests and {concurrency} clients"
        )
    body, header_length = request_body(engine, model, inputs)
    server = HttpServer(engine, host=_HOST, port=0, drain_timeout_s=5.0)
    await server.start()
    try:
        client = _Client(server.port, model, body, header_length)
        await _run_clients(client, warmup_requests, min(concurrency, max(1, warmup_requests)))
        process_before = time.process_time()
        results = await _run_clients(client, requests, concurrency)
        process_s = time.process_time() - process_before
    finally:
        await server.stop(drain_timeout_s=5.0)
    client_s = sum(r.cpu_s for r in results)
    latencies = [ms for r in results for ms in r.latencies_ms]
    return ServedPoint(
        requests=len(latencies),
        concurrency=concurrency,
        cpu_ms=max(0.0, process_s - client_s) * 1000.0 / len(latencies),
        client_cpu_ms=client_s * 1000.0 / len(latencies),
        latency_p50_ms=float(np.percentile(latencies, 50)),
    )


@dataclass(slots=True)
class _ClientRun:
    cpu_s: float
    latencies_ms: list[float]


class _Client:
    """Blocking HTTP/1.1 keep-alive client; one connection per calling thread."""

    def __init__(self, port: int, model: str, body: bytes, header_length: int | None) -> None:
        self.port = port
        self.model = model
        self.body = body
        self.headers = {"Content-Type": "application/octet-stream"}
        if header_length is not None:
            self.headers["Inference-Header-Content-Length"] = str(header_length)

    def run(self, count: int) -> _ClientRun:
        cpu_start = time.thread_time()
        latencies: list[float] = []
        connection = http.client.HTTPConnection(_HOST, self.port, timeout=_TIMEOUT_S)
        try:
            for _ in range(count):
                start = time.perf_counter()
                connection.request("POST", f"/v2/models/{self.model}/infer", self.body, self.headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    raise UnavailableError(
                        f"model '{self.model}' failed when served over HTTP: {response.status} "
                        f"{payload[:300]!r}"
                    )
                latencies.append((time.perf_counter() - start) * 1000.0)
        except (OSError, http.client.HTTPException) as exc:
            raise UnavailableError(
                f"model '{self.model}': HTTP request to the profiler failed: {exc}"
            ) from exc
        finally:
            connection.close()
        return _ClientRun(time.thread_time() - cpu_start, latencies)


async def _run_clients(client: _Client, requests: int, concurrency: int) -> list[_ClientRun]:
    if requests <= 0:
        return []
    loop = asyncio.get_running_loop()
    shares = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
    # Threads of their own: the engine may use the loop's default executor, which blocking clients
    # must not starve.
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="served-client") as pool:
        runs: list[Any] = [loop.run_in_executor(pool, client.run, share) for share in shares if share > 0]
        return list(await asyncio.gather(*runs))
