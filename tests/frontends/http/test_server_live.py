"""The real HTTP server with the official tritonclient, and a graceful stop."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from packserve.frontends.http import HttpLimits, HttpServer
from tests.fakes.engine import FakeEngine


def test_tritonclient_binary_and_json_infer(live_server):
    client = httpclient.InferenceServerClient(live_server.url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("simple")
        assert client.get_model_metadata("simple")["inputs"][0]["shape"] == [-1, 16]
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        b = np.ones((1, 16), dtype=np.int32)
        for binary in (True, False):
            inputs = [
                httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                httpclient.InferInput("INPUT1", [1, 16], "INT32"),
            ]
            inputs[0].set_data_from_numpy(a, binary_data=binary)
            inputs[1].set_data_from_numpy(b, binary_data=binary)
            outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
            result = client.infer("simple", inputs, outputs=outputs, request_id="r1")
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
            assert result.get_response()["id"] == "r1"
        strings = np.array([b"hello", b"\x00\xffbin"], dtype=np.object_)
        text = httpclient.InferInput("S", [2], "BYTES")
        text.set_data_from_numpy(strings)
        result = client.infer(
            "echo", [text], outputs=[httpclient.InferRequestedOutput("S", binary_data=True)]
        )
        assert result.as_numpy("S").tolist() == strings.tolist()
        stats = client.get_inference_statistics("simple")
        assert stats["model_stats"][0]["inference_count"] == 2  # the two requests above
        index = [m["name"] for m in client.get_model_repository_index()]
        assert index == ["broken", "busy", "echo", "failing", "scores", "simple"]
        with pytest.raises(InferenceServerException, match="ghost"):
            client.get_model_metadata("ghost")
    finally:
        client.close()


def test_tritonclient_gzip_request_and_compression(live_server):
    client = httpclient.InferenceServerClient(live_server.url)
    try:
        x = httpclient.InferInput("X", [3], "FP32")
        x.set_data_from_numpy(np.array([1.0, 2.0, 3.5], dtype=np.float32))
        for algorithm in ("gzip", "deflate"):
            result = client.infer("echo", [x], request_compression_algorithm=algorithm)
            assert result.as_numpy("X").tolist() == [1.0, 2.0, 3.5]
    finally:
        client.close()


def test_server_keeps_serving_after_garbage(live_server):
    host, port = live_server.url.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{{{{{")
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400")
    client = httpclient.InferenceServerClient(live_server.url)
    try:
        assert client.is_server_live()
    finally:
        client.close()


async def test_stop_finishes_in_flight_requests():
    """stop() stops accepting but lets a request that is already in the engine complete."""
    engine = FakeEngine()
    started = asyncio.Event()
    release = asyncio.Event()
    original = engine.infer

    async def slow_infer(request):
        started.set()
        await release.wait()
        return await original(request)

    engine.infer = slow_infer
    server = HttpServer(engine, "127.0.0.1", 0, HttpLimits(), drain_timeout_s=5)
    await server.start()
    body = b'{"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[4]}]}'
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.1)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)  # no longer accepting
    release.set()
    reply = await asyncio.wait_for(reader.read(), 5)
    assert reply.startswith(b"HTTP/1.1 200")
    assert b'"data":[4]' in reply
    await asyncio.wait_for(stopping, 10)
    writer.close()


async def test_stop_answers_a_request_still_arriving_and_closes_idle_connections():
    """A request whose body is still on its way when stop() starts was accepted: it is read to the
    end and answered (Connection: close); an idle keep-alive connection is closed at once."""
    server = HttpServer(FakeEngine(), "127.0.0.1", 0, HttpLimits(), drain_timeout_s=5)
    await server.start()
    body = b'{"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[4]}]}'
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    writer.write(body[:10])
    await writer.drain()
    await asyncio.sleep(0.2)
    stopping = asyncio.create_task(server.stop())
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # the idle one: closed
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waits for the one still arriving
    writer.write(body[10:])
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    assert reply.startswith(b"HTTP/1.1 200") and b"connection: close" in reply.lower()
    assert b'"data":[4]' in reply
    await asyncio.wait_for(stopping, 10)
    writer.close()
    idle_writer.close()


async def test_start_fails_loudly_when_port_taken():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = HttpServer(object(), "127.0.0.1", sock.getsockname()[1], HttpLimits())  # type: ignore[arg-type]
        with pytest.raises(OSError):
            await server.start()
