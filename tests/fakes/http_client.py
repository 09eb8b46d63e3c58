"""One HTTP/1.1 request through the door production uses, without a socket.

`HttpCaller` writes the request's bytes into an `HttpProtocol` (httptools parsing, the body limit,
`HttpApp.handle`, `encode_reply`) over an in-memory transport and reads the response back off the
wire bytes, so a test sees exactly what a client would: status line, headers, body.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from packserve.core.engine_api import EngineApi
from packserve.frontends.http.app import HttpApp
from packserve.frontends.http.connections import ConnectionLimits, ConnectionTracker
from packserve.frontends.http.console import ConsoleAssets
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.protocol import HttpProtocol
from packserve.frontends.restrictions import Restrictions

_ANSWER_TIMEOUT_S = 60.0  # generous: only a hung server would take this long


class HttpResult:
    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers  # names lower-case, as the server writes them
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


class MemoryTransport:
    """The part of asyncio.Transport that HttpProtocol uses; what it writes is kept in `written`."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.changed = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written += data
        self.changed.set()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.changed.set()

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class HttpCaller:
    """`await caller(method, path, body, headers, chunk_size)`: one request on a new connection.
    With `chunk_size` the body goes out with Transfer-Encoding: chunked, one chunk per write."""

    def __init__(
        self,
        engine: EngineApi,
        limits: HttpLimits | None = None,
        console: ConsoleAssets | None = None,
        restrictions: Restrictions | None = None,
    ) -> None:
        self.limits = limits or HttpLimits()
        self.app = HttpApp(engine, self.limits, console, restrictions)
        self._tracker = ConnectionTracker()

    async def __call__(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        chunk_size: int = 0,
    ) -> HttpResult:
        given = {name.lower(): value for name, value in (headers or {}).items()}
        lines = [f"{method} {path} HTTP/1.1", "host: test"]
        lines += [f"{name}: {value}" for name, value in given.items()]
        if chunk_size:
            lines.append("transfer-encoding: chunked")
            writes = [
                b"%x\r\n%s\r\n" % (len(body[i : i + chunk_size]), body[i : i + chunk_size])
                for i in range(0, len(body), chunk_size)
            ]
            writes.append(b"0\r\n\r\n")
        else:
            if "content-length" not in given:
                lines.append(f"content-length: {len(body)}")
            writes = [body] if body else []
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        transport = MemoryTransport()
        protocol = HttpProtocol(self.app, self.limits, self._tracker, ConnectionLimits())
        protocol.connection_made(transport)  # type: ignore[arg-type]
        try:
            for data in (head, *writes):
                if transport.closed:
                    break  # refused part-way (a body over the limit, a malformed head)
                protocol.data_received(data)
            return await asyncio.wait_for(_response(transport), _ANSWER_TIMEOUT_S)
        finally:
            protocol.connection_lost(None)


async def _response(transport: MemoryTransport) -> HttpResult:
    """The first complete response written to `transport` (always with a Content-Length)."""
    while True:
        parsed = _parse(bytes(transport.written))
        if parsed is not None:
            return parsed
        if transport.closed:
            raise AssertionError(f"connection closed without a complete response: {bytes(transport.written)!r}")
        transport.changed.clear()
        await transport.changed.wait()


def _parse(wire: bytes) -> HttpResult | None:
    head, separator, rest = wire.partition(b"\r\n\r\n")
    if not separator:
        return None
    status_line, *header_lines = head.split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers[b"content-length"])
    if len(rest) < length:
        return None
    return HttpResult(int(status_line.split()[1]), headers, rest[:length])
