"""The native gRPC transport's HTTP/2, driven frame by frame over a raw socket (hpack for header
blocks): flow control, limits, deadlines, resets, protocol errors and the graceful stop."""

from __future__ import annotations

import base64
import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import hpack
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from packserve.frontends.grpc import GrpcOptions
from packserve.frontends.grpc.native_headers import HeaderReader, MalformedRequest, parse_timeout
from tests.fakes.engine import FakeEngine
from tests.frontends.grpc.grpc_server_thread import ServerThread
from tests.frontends.grpc.h2_raw_client import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    GOAWAY,
    HEADERS,
    PING,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    RawH2,
    echo_request,
    frame,
    grpc_message,
)

OK, CANCELLED, DEADLINE, NOT_FOUND, EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 1, 4, 5, 8, 12, 13
PROTOCOL_ERROR, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0x1, 0x6, 0x7, 0x8, 0xB


def _echoed(message: bytes) -> list[int]:
    response = service_pb2.ModelInferResponse.FromString(message)
    return np.frombuffer(response.raw_output_contents[0], dtype=np.int32).tolist()


def _serves_on(port: int, value: int) -> None:
    """A fresh connection still gets an answer (after another connection was ended)."""
    fresh = RawH2(port)
    try:
        fresh.start_call(1, grpc_message(echo_request([value])))
        assert fresh.answer(1).status == OK
    finally:
        fresh.close()


@pytest.fixture
def server(engine: FakeEngine) -> Iterator[ServerThread]:
    """The native transport only (the folder's `server` fixture runs both)."""
    running = ServerThread(GrpcOptions(implementation="native"))
    try:
        running.start(engine)
        yield running
    finally:
        running.stop()


@pytest.fixture
def raw(server: ServerThread) -> Iterator[RawH2]:
    assert server.server is not None
    client = RawH2(server.server.port)
    try:
        yield client
    finally:
        client.close()


def test_unary_call_settings_ack_and_ping(raw: RawH2) -> None:
    raw.start_call(1, grpc_message(echo_request([1, 2, 3])))
    answer = raw.answer(1)
    assert answer.headers[":status"] == "200" and answer.headers["content-type"] == "application/grpc"
    assert answer.status == OK and _echoed(answer.messages[0]) == [1, 2, 3]
    raw.send(frame(PING, 0, 0, b"12345678"))
    got = raw.wait_for(PING)  # no keepalive configured: the server's only PING is the ACK
    assert got is not None and got[1] & 0x1 and got[3] == b"12345678"
    kinds = {(kind, flags) for kind, flags, _, _ in raw.other}
    assert (SETTINGS, 0) in kinds and (SETTINGS, 1) in kinds  # the server's SETTINGS and its ACK of ours


def test_request_split_over_frames_and_header_block_in_continuations(raw: RawH2) -> None:
    block = raw.headers_block(extra=[("x-padding", "p" * 20_000)])  # larger than one 16 KiB frame
    raw.send(frame(HEADERS, 0, 1, block[:10_000]) + frame(CONTINUATION, END_HEADERS, 1, block[10_000:]))
    message = grpc_message(echo_request(list(range(100))))
    raw.send(frame(DATA, 0, 1, message[:7]))
    raw.send(frame(DATA, 0x1, 1, message[7:]))
    answer = raw.answer(1)
    assert answer.status == OK and _echoed(answer.messages[0]) == list(range(100))


def test_outbound_flow_control_waits_for_window(server: ServerThread) -> None:
    assert server.server is not None
    client = RawH2(server.server.port, settings={0x4: 10})  # INITIAL_WINDOW_SIZE: 10 bytes
    try:
        client.start_call(1, grpc_message(echo_request(list(range(64)))))
        first = client.read_frame()
        while first is not None and first[0] != DATA:
            first = client.read_frame()
        assert first is not None and len(first[3]) == 10  # no more than the window allowed
        client.send(frame(WINDOW_UPDATE, 0, 1, (1 << 20).to_bytes(4, "big")))
        answer = client.answer(1)
        assert answer.status == OK
        assert _echoed((first[3] + answer.data)[5:]) == list(range(64))
    finally:
        client.close()


def test_gzip_and_deflate_requests_are_read_and_others_refused(raw: RawH2) -> None:
    body = echo_request([1, 2, 3])
    raw.start_call(1, grpc_message(gzip.compress(body), compressed=True), extra=[("grpc-encoding", "gzip")])
    answer = raw.answer(1)
    assert answer.status == OK and _echoed(answer.data[5:]) == [1, 2, 3]
    raw.start_call(3, grpc_message(zlib.compress(body), compressed=True), extra=[("grpc-encoding", "deflate")])
    answer = raw.answer(3)
    assert answer.status == OK and _echoed(answer.data[5:]) == [1, 2, 3]
    # A message may go uncompressed on a compressed call (its flag says so).
    raw.start_call(5, grpc_message(body), extra=[("grpc-encoding", "gzip")])
    assert raw.answer(5).status == OK
    raw.start_call(7, grpc_message(body), extra=[("grpc-encoding", "snappy")])
    answer = raw.answer(7)
    assert answer.status == UNIMPLEMENTED and "snappy" in answer.message
    assert answer.headers.get("grpc-accept-encoding") == "identity,deflate,gzip"
    raw.start_call(9, grpc_message(b"\x1f\x8b", compressed=True))  # compressed, but no grpc-encoding
    answer = raw.answer(9)
    assert answer.status == INTERNAL and "grpc-encoding" in answer.message
    raw.start_call(11, grpc_message(b"not gzip at all", compressed=True), extra=[("grpc-encoding", "gzip")])
    answer = raw.answer(11)
    assert answer.status == INTERNAL and "decompress" in answer.message
    raw.start_call(13, grpc_message(echo_request([13])))
    assert raw.answer(13).status == OK  # the connection serves on


def test_a_small_message_that_inflates_past_the_limit_is_refused_unread() -> None:
    running = ServerThread(GrpcOptions(implementation="native", max_receive_message_bytes=10_000))
    running.start(FakeEngine())
    assert running.server is not None
    client = RawH2(running.server.port)
    try:
        bomb = gzip.compress(bytes(5_000_000))  # ~5 KB on the wire (one DATA frame), 5 MB inflated
        client.start_call(1, grpc_message(bomb, compressed=True), extra=[("grpc-encoding", "gzip")])
        answer = client.answer(1)
        assert answer.status == EXHAUSTED and "decompressed" in answer.message
    finally:
        client.close()
        running.stop()


def test_tritonclient_compressed_requests(server: ServerThread) -> None:
    assert server.server is not None
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.server.port}")
    try:
        for algorithm in ("gzip", "deflate"):
            tensor = grpcclient.InferInput("INPUT", [4], "INT32")
            tensor.set_data_from_numpy(np.arange(4, dtype=np.int32))
            result = client.infer("echo", [tensor], compression_algorithm=algorithm)
            assert result.as_numpy("INPUT").tolist() == [0, 1, 2, 3]
    finally:
        client.close()


def test_message_over_the_receive_limit_is_resource_exhausted() -> None:
    running = ServerThread(GrpcOptions(max_receive_message_bytes=1000))
    running.start(FakeEngine())
    assert running.server is not None
    client = RawH2(running.server.port)
    try:
        client.start_call(1, grpc_message(echo_request(list(range(500)))))
        answer = client.answer(1)
        assert answer.status == EXHAUSTED
        assert answer.message.startswith("Received message larger than max (")
        client.start_call(3, grpc_message(echo_request([1])))
        assert client.answer(3).status == OK
    finally:
        client.close()
        running.stop()


def test_deadline_exceeded(raw: RawH2, engine: FakeEngine) -> None:
    engine.delay_s = 5.0
    raw.start_call(1, grpc_message(echo_request([1])), extra=[("grpc-timeout", "100m")])
    answer = raw.answer(1)
    assert answer.status == DEADLINE and answer.message == "Deadline Exceeded"


def test_rst_stream_cancels_the_call_and_the_connection_serves_on(raw: RawH2, engine: FakeEngine) -> None:
    engine.delay_s = 1.0
    raw.start_call(1, grpc_message(echo_request([1])))
    time.sleep(0.2)
    raw.send(frame(RST_STREAM, 0, 1, CANCEL.to_bytes(4, "big")))
    engine.delay_s = 0.0
    raw.start_call(3, grpc_message(echo_request([3])))
    answer = raw.answer(3)
    assert answer.status == OK and _echoed(answer.messages[0]) == [3]
    assert not any(sid == 1 and kind == DATA for kind, _, sid, _ in raw.other)


def test_streams_beyond_the_limit_are_refused(raw: RawH2) -> None:
    for stream_id in range(1, 2 * 257, 2):  # 257 calls waiting for their request bodies
        raw.send(frame(HEADERS, END_HEADERS, stream_id, raw.headers_block()))
    got = raw.wait_for(RST_STREAM)
    assert got is not None and got[2] == 513 and int.from_bytes(got[3], "big") == REFUSED_STREAM


def test_unknown_method_and_metadata_limits(raw: RawH2) -> None:
    raw.start_call(1, grpc_message(b""), path="/inference.GRPCInferenceService/Nope")
    answer = raw.answer(1)
    assert answer.status == UNIMPLEMENTED
    raw.start_call(3, grpc_message(b""), extra=[("x-big", "v" * 40_000)])  # over the 32 KiB limit
    answer = raw.answer(3)
    assert answer.status == EXHAUSTED and "metadata size exceeds limit" in answer.message


def test_grpc_message_is_percent_encoded(raw: RawH2) -> None:
    raw.start_call(1, grpc_message(echo_request([1], model="mødel 100%")))
    answer = raw.answer(1)
    assert answer.status == NOT_FOUND
    assert "%C3%B8" in answer.trailers.get("grpc-message", answer.headers.get("grpc-message", ""))
    assert "mødel 100%" in answer.message


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", PROTOCOL_ERROR),  # not HTTP/2
        (frame(SETTINGS, 0, 0, b"\x00" * 7), FRAME_SIZE_ERROR),  # not a multiple of 6
        (frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),  # DATA on stream 0
        (frame(HEADERS, END_HEADERS, 2, b"\x82"), PROTOCOL_ERROR),  # an even (server) stream id
        ((1 << 20).to_bytes(3, "big") + b"\x00" * 6, FRAME_SIZE_ERROR),  # above our max frame size
        (frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"), 0x9),  # HPACK garbage: COMPRESSION_ERROR
        (frame(HEADERS, 0, 1, b"\x82") + frame(PING, 0, 0, b"x" * 8), PROTOCOL_ERROR),  # block interrupted
    ],
)
def test_protocol_errors_answer_goaway_and_the_server_serves_on(
    server: ServerThread, data: bytes, code: int
) -> None:
    assert server.server is not None
    client = RawH2(server.server.port, handshake=not data.startswith(b"GET"))
    try:
        client.send(data)
        got = client.wait_for(GOAWAY)
        assert got is not None and int.from_bytes(got[3][4:8], "big") == code
        assert client.read_frame() is None  # and closed
    finally:
        client.close()
    _serves_on(server.server.port, 7)


def test_idle_connection_gets_goaway() -> None:
    running = ServerThread(GrpcOptions(max_connection_idle_ms=200))
    running.start(FakeEngine())
    assert running.server is not None
    client = RawH2(running.server.port)
    try:
        got = client.wait_for(GOAWAY)
        assert got is not None and int.from_bytes(got[3][4:8], "big") == 0
        assert client.read_frame() is None
    finally:
        client.close()
        running.stop()


def test_graceful_stop_goaway_then_drains_the_call_in_flight() -> None:
    engine = FakeEngine()
    engine.delay_s = 0.5
    running = ServerThread()
    running.start(engine)
    assert running.server is not None
    client = RawH2(running.server.port)
    try:
        client.start_call(1, grpc_message(echo_request([9])))
        time.sleep(0.2)
        stopper = threading.Thread(target=lambda: running.call(running.server.stop(10.0)))  # type: ignore[union-attr]
        stopper.start()
        got = client.wait_for(GOAWAY)
        assert got is not None and int.from_bytes(got[3][:4], "big") == 1  # stream 1 will still be served
        answer = client.answer(1)
        assert answer.status == OK and _echoed(answer.messages[0]) == [9]
        stopper.join(timeout=30)
        assert client.read_frame() is None
    finally:
        client.close()
        running.server = None
        running.stop()


def test_health_watch_streams_changes(server: ServerThread, engine: FakeEngine) -> None:
    from grpc_health.v1 import health_pb2

    client = RawH2(server.server.port)  # type: ignore[union-attr]
    try:
        request = grpc_message(health_pb2.HealthCheckRequest().SerializeToString())
        client.start_call(1, request, path="/grpc.health.v1.Health/Watch")
        first = client.wait_for(DATA)
        assert first is not None
        assert health_pb2.HealthCheckResponse.FromString(first[3][5:]).status == 1  # SERVING
        engine.ready = False
        second = client.wait_for(DATA)
        assert second is not None
        assert health_pb2.HealthCheckResponse.FromString(second[3][5:]).status == 2  # NOT_SERVING
        client.send(frame(RST_STREAM, 0, 1, CANCEL.to_bytes(4, "big")))
    finally:
        client.close()


def test_binary_metadata_and_timeouts_are_read() -> None:
    encoder = hpack.Encoder()
    value = b"\x00\xffbinary"
    block = encoder.encode(
        [
            (":method", "POST"), (":path", "/x/y"), (":scheme", "http"), ("content-type", "application/grpc"),
            ("trace-bin", base64.b64encode(value).rstrip(b"=").decode()), ("x-text", "plain"),
            ("grpc-timeout", "250m"),
        ]
    )  # fmt: skip
    head = HeaderReader(32 * 1024).request_head(block)
    assert dict(head.metadata) == {"trace-bin": value, "x-text": "plain"}
    assert head.timeout_s == pytest.approx(0.25) and head.path == "/x/y"
    assert parse_timeout(b"3S") == 3.0
    with pytest.raises(MalformedRequest):
        parse_timeout(b"123456789S")


def test_tritonclient_on_both_implementations() -> None:
    for implementation in ("native", "grpcio"):
        running = ServerThread(GrpcOptions(implementation=implementation))
        running.start(FakeEngine())
        try:
            triton = grpcclient.InferenceServerClient(running.url)
            tensor = grpcclient.InferInput("INPUT", [3], "INT32")
            tensor.set_data_from_numpy(np.array([4, 5, 6], dtype=np.int32))
            assert triton.infer("echo", [tensor]).as_numpy("INPUT").tolist() == [4, 5, 6]
            triton.close()
        finally:
            running.stop()
    with pytest.raises(ValueError, match="native or grpcio"):
        GrpcOptions(implementation="h2")


def test_cli_refuses_an_unknown_implementation(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from packserve.cli import app

    result = CliRunner().invoke(
        app, ["serve", "--model-repository", str(tmp_path), "--grpc-implementation", "h2"]
    )
    assert result.exit_code == 2 and "must be native or grpcio" in result.output


def test_rapid_reset_ends_the_connection_with_enhance_your_calm(server: ServerThread) -> None:
    """Opening and cancelling streams at once (the HTTP/2 "rapid reset" attack) is allowed for a
    burst, then the connection gets GOAWAY ENHANCE_YOUR_CALM; other clients are served on."""
    assert server.server is not None
    client = RawH2(server.server.port)
    try:
        block = client.headers_block()
        pairs = [
            frame(HEADERS, END_HEADERS, stream, block) + frame(RST_STREAM, 0, stream, CANCEL.to_bytes(4, "big"))
            for stream in range(1, 2 * 1_000, 2)
        ]
        client.send(b"".join(pairs))
        got = client.wait_for(GOAWAY)
        assert got is not None and int.from_bytes(got[3][4:8], "big") == ENHANCE_YOUR_CALM
        assert client.read_frame() is None  # and closed
    finally:
        client.close()
    _serves_on(server.server.port, 9)


def test_compressed_stream_messages_count_as_held_while_the_stream_lives(server: ServerThread) -> None:
    """The flow-control cap counts what a connection holds for its handlers: a compressed message
    is taken by the handler inflated, and must be counted as it was held, or each one taken would
    lower the connection's count below zero and switch the cap off for the rest of the stream."""
    assert server.server is not None
    client = RawH2(server.server.port)
    try:
        stream = "/inference.GRPCInferenceService/ModelStreamInfer"
        body = echo_request(list(range(1000)))  # 4 KB of small ints: inflates well past its wire size
        messages = b"".join(grpc_message(gzip.compress(body), compressed=True) for _ in range(3))
        client.start_call(1, None, path=stream, extra=[("grpc-encoding", "gzip")])
        client.send(frame(DATA, 0, 1, messages))  # the stream stays open
        answers = 0
        while answers < 3:
            got = client.read_frame()
            assert got is not None
            answers += got[0] == DATA and got[2] == 1
        native = server.server._native  # the transport's own books, as the cap reads them
        assert native is not None
        assert all(connection._buffered >= 0 for connection in native._hub.connections)
    finally:
        client.close()
