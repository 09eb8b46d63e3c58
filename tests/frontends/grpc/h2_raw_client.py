"""A raw HTTP/2 client over a socket, for driving the native gRPC transport frame by frame (with the
`hpack` package for header blocks): what tritonclient never sends, a test can."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

import hpack
import numpy as np
from tritonclient.grpc import service_pb2

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
INFER = "/inference.GRPCInferenceService/ModelInfer"


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


def grpc_message(payload: bytes, compressed: bool = False) -> bytes:
    return bytes((int(compressed),)) + len(payload).to_bytes(4, "big") + payload


def echo_request(values: list[int], model: str = "echo") -> bytes:
    """A ModelInferRequest for the fake engine's `echo` model (one INT32 input), serialized."""
    request = service_pb2.ModelInferRequest(model_name=model, id="raw")
    request.inputs.add(name="INPUT", datatype="INT32", shape=[len(values)])
    request.raw_input_contents.append(np.array(values, dtype=np.int32).tobytes())
    return request.SerializeToString()


@dataclass
class Answer:
    headers: dict[str, str] = field(default_factory=dict)
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None  # RST_STREAM error code, when the stream was reset
    data: bytes = b""  # every DATA byte of the stream, gRPC framing included

    @property
    def status(self) -> int:
        fields = self.trailers or self.headers
        return int(fields["grpc-status"])

    @property
    def message(self) -> str:
        fields = self.trailers or self.headers
        return unquote(fields.get("grpc-message", ""))


class RawH2:
    def __init__(self, port: int, settings: dict[int, int] | None = None, handshake: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self._buffer = b""
        self._data: dict[int, bytes] = {}
        self.other: list[tuple[int, int, int, bytes]] = []  # frames not of a stream being read
        if handshake:
            payload = b"".join(
                k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in (settings or {}).items()
            )
            self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, payload))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def headers_block(self, path: str = INFER, extra: list[tuple[str, str]] | None = None) -> bytes:
        fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "test")]
        fields += [("content-type", "application/grpc"), ("te", "trailers"), *(extra or [])]
        return self.encoder.encode(fields)

    def start_call(
        self,
        stream_id: int,
        message: bytes | None,
        path: str = INFER,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """HEADERS, then (when given) one DATA frame with END_STREAM."""
        block = self.headers_block(path, extra)
        pieces = [block[i : i + 16_384] for i in range(0, len(block), 16_384)]  # the default frame size
        frames = [frame(HEADERS, END_HEADERS if len(pieces) == 1 else 0, stream_id, pieces[0])]
        for n, piece in enumerate(pieces[1:], start=2):
            frames.append(frame(CONTINUATION, END_HEADERS if n == len(pieces) else 0, stream_id, piece))
        self.send(b"".join(frames))
        if message is not None:
            self.send(frame(DATA, END_STREAM, stream_id, message))

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        """The next frame, or None once the server closed the connection."""
        while True:
            if len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if len(self._buffer) >= 9 + length:
                    head, self._buffer = self._buffer[: 9 + length], self._buffer[9 + length :]
                    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, head[9:]
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self._buffer += chunk

    def answer(self, stream_id: int) -> Answer:
        """Frames of one stream up to its end (trailers, or RST_STREAM); others go to `other`."""
        answer = Answer()
        data = b""
        block = b""
        while True:
            got = self.read_frame()
            assert got is not None, "the server closed the connection"
            kind, flags, sid, payload = got
            if sid != stream_id:
                self.other.append(got)
                continue
            if kind == DATA:
                data += payload
            elif kind == RST_STREAM:
                answer.reset = int.from_bytes(payload, "big")
                break
            elif kind in (HEADERS, CONTINUATION):
                block += payload
                if flags & END_HEADERS:
                    fields = {k: v for k, v in self.decoder.decode(block)}
                    block = b""
                    target = answer.trailers if answer.headers else answer.headers
                    target.update(fields)
                if flags & END_STREAM:
                    break
        answer.data = data
        while len(data) >= 5:
            length = int.from_bytes(data[1:5], "big")
            answer.messages.append(data[5 : 5 + length])
            data = data[5 + length :]
        return answer

    def wait_for(self, kind: int) -> tuple[int, int, int, bytes] | None:
        """Read until a frame of `kind` (None when the connection closes first)."""
        for got in self.other:
            if got[0] == kind:
                self.other.remove(got)
                return got
        while (got := self.read_frame()) is not None:
            if got[0] == kind:
                return got
            self.other.append(got)
        return None


def ping_burst(port: int, count: int) -> list[tuple[str, int, bytes]]:
    """`count` PINGs on a fresh idle connection at once, and every PING ACK / GOAWAY answered
    until the server closes (or goes quiet for 2 s)."""
    client = RawH2(port)
    client.sock.settimeout(2.0)
    client.send(b"".join(frame(PING, 0, 0, b"%08d" % n) for n in range(count)))
    answers: list[tuple[str, int, bytes]] = []
    try:
        while (got := client.read_frame()) is not None:
            kind, flags, _, body = got
            if kind == PING and flags & ACK:
                answers.append(("ACK", 0, body))
            elif kind == GOAWAY:
                answers.append(("GOAWAY", int.from_bytes(body[4:8], "big"), body[8:]))
    except TimeoutError:
        answers.append(("open", 0, b""))
    finally:
        client.close()
    return answers


def idle_connection_events(port: int, seconds: float) -> list[tuple[float, str, int, int]]:
    """What the server sends on an idle connection (its PINGs acknowledged) within `seconds`:
    (time, "PING", 0, 0), (time, "GOAWAY", last stream, error code), (time, "closed", 0, 0)."""
    client = RawH2(port)
    client.sock.settimeout(seconds)
    started = time.monotonic()
    events: list[tuple[float, str, int, int]] = []
    try:
        while time.monotonic() - started < seconds:
            got = client.read_frame()
            now = time.monotonic() - started
            if got is None:
                events.append((now, "closed", 0, 0))
                break
            kind, flags, _, body = got
            if kind == PING and not flags & ACK:
                events.append((now, "PING", 0, 0))
                client.send(frame(PING, ACK, 0, body))
            elif kind == GOAWAY:
                events.append(
                    (now, "GOAWAY", int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big"))
                )
    except TimeoutError:
        pass
    finally:
        client.close()
    return events
