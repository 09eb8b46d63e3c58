"""CPU per inference call of each front end, in process and without sockets: what the server's
event loop spends between a request's bytes arriving and its answer's bytes leaving, with an engine
that answers at once. The machine's load does not move it the way it moves perf_analyzer figures.

    .venv/bin/python -m bench.front_end_cost [--calls 30000] [--repeats 5]

The traffic is what perf_analyzer sends at concurrency 8 on `simple` (two INT32 [1,16] inputs, two
outputs): over HTTP, 8 keep-alive connections each carrying one request (binary tensor extension)
per round; over gRPC (the native transport), 8 unary ModelInfer calls per round on 2 connections,
as tritonclient.grpc multiplexes its channel, followed by the client's WINDOW_UPDATEs (one for the
connection and one for the stream per answer). Each protocol's request bytes are built by
tritonclient's own encoders (its HTTP body builder, its protobuf messages; HPACK with a dynamic
table, as gRPC clients send repeated headers). Reported: the median over repeats of the process CPU
per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import hpack
import numpy as np
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2

from packserve.frontends.grpc import h2_frames as h2
from packserve.frontends.grpc.health import EngineHealthServicer
from packserve.frontends.grpc.native_connection import GrpcConnection
from packserve.frontends.grpc.native_methods import method_table
from packserve.frontends.grpc.native_server import ConnectionHub
from packserve.frontends.grpc.native_settings import NativeSettings
from packserve.frontends.grpc.servicer import InferenceServicer
from packserve.frontends.http.app import HttpApp
from packserve.frontends.http.connections import ConnectionTracker
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.protocol import HttpProtocol
from packserve.messages import InferRequest, InferResponse

_CONCURRENCY = 8
_GRPC_CONNECTIONS = 2
_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


class InstantEngine:
    """`simple`'s answer (sum and difference) computed on the spot: no scheduling, no model."""

    shared_memory = None

    async def infer(self, request: InferRequest) -> InferResponse:
        a, b = request.inputs["INPUT0"], request.inputs["INPUT1"]
        return InferResponse(request.model_name, "1", request.id, {"OUTPUT0": a + b, "OUTPUT1": a - b})

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the front end asked the engine for '{name}', which this bench does not serve")


class CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.last = b""

    def write(self, data: Any) -> None:
        self.writes += 1
        self.last = bytes(data)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    return a, np.full((1, 16), 7, dtype=np.int32)


def _http_request() -> bytes:
    a, b = _inputs()
    inputs = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a, binary_data=True)
    inputs[1].set_data_from_numpy(b, binary_data=True)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in ("OUTPUT0", "OUTPUT1")]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    head = (
        f"POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: */*\r\n"
        f"Inference-Header-Content-Length: {json_size}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _grpc_message() -> bytes:
    message = service_pb2.ModelInferRequest(model_name="simple")
    for name, array in zip(("INPUT0", "INPUT1"), _inputs(), strict=True):
        message.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        message.raw_input_contents.append(array.tobytes())
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class GrpcClientBytes:
    """What one tritonclient.grpc channel sends: HEADERS + DATA per call, then WINDOW_UPDATEs."""

    _HEADERS = (
        (":method", "POST"), (":scheme", "http"), (":path", _INFER_PATH), (":authority", "127.0.0.1:8001"),
        ("te", "trailers"), ("content-type", "application/grpc"),
        ("user-agent", "grpc-c++/1.67.1 grpc-c/44.0.0 (linux; chttp2)"),
        ("grpc-accept-encoding", "identity, deflate, gzip"),
    )  # fmt: skip

    def __init__(self) -> None:
        self._encoder = hpack.Encoder()
        self._next_stream = 1
        self._message = _grpc_message()

    def calls(self, count: int) -> tuple[bytes, bytes]:
        streams = [self._next_stream + 2 * n for n in range(count)]
        self._next_stream += 2 * count
        requests = b"".join(
            h2.frame(h2.HEADERS, h2.END_HEADERS, s, self._encoder.encode(self._HEADERS))
            + h2.frame(h2.DATA, h2.END_STREAM, s, self._message)
            for s in streams
        )
        updates = b"".join(h2.window_update(0, 200) + h2.window_update(s, 200) for s in streams)
        return requests, updates


async def _settle(passes: int = 4) -> None:
    for _ in range(passes):
        await asyncio.sleep(0)


async def measure_http(calls: int) -> float:
    app = HttpApp(InstantEngine(), HttpLimits())  # type: ignore[arg-type]
    tracker = ConnectionTracker()
    connections = []
    for _ in range(_CONCURRENCY):
        protocol = HttpProtocol(app, HttpLimits(), tracker)
        transport = CountingTransport()
        protocol.connection_made(transport)
        connections.append((protocol, transport))
    request = _http_request()

    def one_round() -> None:
        for protocol, _ in connections:
            protocol.data_received(request)

    elapsed = await _timed(calls, one_round, lambda: None)
    for _, transport in connections:
        if transport.writes != _WARM + _rounds(calls) or not transport.last.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"HTTP answered {transport.writes} calls, the last {transport.last[:40]!r}")
    return elapsed


async def measure_grpc(calls: int) -> float:
    engine = InstantEngine()
    settings = NativeSettings(
        max_receive_message_bytes=256 << 20,
        max_send_message_bytes=256 << 20,
        max_metadata_bytes=32 << 10,
        max_connection_idle_s=0.0,
    )
    hub = ConnectionHub(settings, method_table(InferenceServicer(engine), EngineHealthServicer(engine)))  # type: ignore[arg-type]
    channels = []
    for _ in range(_GRPC_CONNECTIONS):
        connection = GrpcConnection(hub)
        transport = CountingTransport()
        connection.connection_made(transport)
        connection.data_received(h2.PREFACE + h2.frame(h2.SETTINGS, 0, 0) + h2.window_update(0, 1 << 30))
        channels.append((connection, transport, GrpcClientBytes()))
    per_channel = _CONCURRENCY // _GRPC_CONNECTIONS
    # The client's bytes are made before the clock starts: HPACK encoding is the client's work.
    script = iter(
        [[client.calls(per_channel) for _, _, client in channels] for _ in range(_rounds(calls) + _WARM)]
    )
    updates: list[bytes] = []

    def one_round() -> None:
        updates[:] = []
        for (connection, _, _), (requests, window_updates) in zip(channels, next(script), strict=True):
            connection.data_received(requests)
            updates.append(window_updates)

    def after_round() -> None:
        for (connection, _, _), window_updates in zip(channels, updates, strict=True):
            connection.data_received(window_updates)

    elapsed = await _timed(calls, one_round, after_round)
    for connection, transport, _ in channels:
        answers = transport.last.count(h2.OK_TRAILERS)
        if connection.calls or answers != per_channel:
            raise RuntimeError(
                f"{answers} of the last {per_channel} calls answered OK, {len(connection.calls)} open"
            )
    return elapsed


_WARM = 50  # rounds before the clock starts: plans and caches filled, as on a server that has run a while


def _rounds(calls: int) -> int:
    return max(1, calls // _CONCURRENCY)


async def _timed(calls: int, one_round: Callable[[], None], after_round: Callable[[], None]) -> float:
    for _ in range(_WARM):
        one_round()
        await _settle()
        after_round()
    rounds = _rounds(calls)
    started = time.process_time()
    for _ in range(rounds):
        one_round()
        await _settle()
        after_round()
    await _settle()
    return 1e6 * (time.process_time() - started) / (rounds * _CONCURRENCY)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    try:
        import uvloop

        run: Callable[[Any], Any] = uvloop.run
    except ImportError:
        run = asyncio.run
    figures: dict[str, list[float]] = {"HTTP": [], "gRPC (native)": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine
        figures["HTTP"].append(run(measure_http(args.calls)))
        figures["gRPC (native)"].append(run(measure_grpc(args.calls)))
    print("| front end | CPU us per call (median) | runs |")
    print("| --- | ---: | --- |")
    for name, values in figures.items():
        runs = " / ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {statistics.median(values):.1f} | {runs} |")


if __name__ == "__main__":
    main()
