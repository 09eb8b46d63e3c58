"""One HTTP/2 connection of the native gRPC transport, as an asyncio Protocol on the server's loop.

Frames are parsed from `data_received` in a loop; control frames produced while reading (SETTINGS
ACK, PING ACK, WINDOW_UPDATE) leave in one write at the end of the chunk. A unary call runs as one
task once its request is whole; answers are written by native_answers.py.

Limits (a hostile client cannot grow memory without bound): a partial frame is at most the frame
size we advertise; a header block at most 4x the metadata limit; streams at most
`MAX_CONCURRENT_STREAMS`; a message at most the receive limit, refused from its 5-byte prefix; the
bytes received and not yet handed to a handler are bounded per connection by not returning
flow-control window past `buffer_cap`; answers wait in their stream while the peer's windows are
shut, and reading pauses while the socket's write buffer is full.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import hpack

from packserve.frontends.grpc import h2_frames as h2
from packserve.frontends.grpc.call_context import DESERIALIZE_FAILED
from packserve.frontends.grpc.native_answers import AnswerWriter, cancel_task
from packserve.frontends.grpc.native_call import (
    INTERNAL,
    NativeCall,
    run_streaming,
    run_unary,
)
from packserve.frontends.grpc.native_control import H2ConnectionError
from packserve.frontends.grpc.native_headers import MalformedRequest
from packserve.frontends.grpc.native_settings import (
    ACCEPT_ENCODING,
    CONNECTION_WINDOW,
    MAX_CONCURRENT_STREAMS,
    RESOURCE_EXHAUSTED,
    STREAM_WINDOW,
    UNIMPLEMENTED,
    inflate,
    refusal_for,
    server_preface,
)

if TYPE_CHECKING:
    from packserve.frontends.grpc.native_server import ConnectionHub

logger = logging.getLogger(__name__)

_WRITE_BUFFER_HIGH = 4 * 1024 * 1024


class GrpcConnection(AnswerWriter):
    def __init__(self, hub: ConnectionHub) -> None:
        super().__init__(hub)
        self._buffer = bytearray()
        self._preface_seen = False
        self._continuing: tuple[int, bool, bytearray] | None = None  # a header block in pieces
        self._conn_owed = 0  # connection window used by the client and not yet given back
        self._buffered = 0  # request bytes received and not yet taken by a handler

    # ---- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=_WRITE_BUFFER_HIGH)  # type: ignore[attr-defined]
        self.hub.connection_opened(self)
        transport.write(server_preface(self.settings))  # type: ignore[attr-defined]
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.hub.connection_closed(self)
        if self._timer is not None:
            self._timer.cancel()
        for call in list(self.calls.values()):
            self._cancel(call)  # nobody can read the answer; the engine skips it if still queued

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._out is None:
            self._out = []  # what reading this chunk writes leaves in one write, below
        try:
            position = self._read_frames(buffer)
        except H2ConnectionError as error:
            self._fail(error.code, str(error))
            return
        except hpack.HPACKError as error:
            self._fail(h2.COMPRESSION_ERROR, f"header block: {error}")
            return
        except Exception:  # a bug must close this connection, never the server
            logger.exception("gRPC connection failed")
            self._fail(h2.INTERNAL_ERROR, "internal error")
            return
        if position:
            del buffer[:position]
        if self.too_many_pings:
            self._fail(h2.ENHANCE_YOUR_CALM, "too_many_pings")
            return
        self._flush_out()

    # ---- frame reading ---------------------------------------------------------------------
    def _read_frames(self, buffer: bytearray) -> int:
        position = 0
        if not self._preface_seen:
            if len(buffer) < len(h2.PREFACE):
                if not h2.PREFACE.startswith(bytes(buffer)):
                    raise H2ConnectionError(h2.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return 0
            if buffer[: len(h2.PREFACE)] != h2.PREFACE:
                raise H2ConnectionError(h2.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self._preface_seen = True
            position = len(h2.PREFACE)
        end_of_data = len(buffer)
        max_frame = self.settings.max_frame_size
        read_head = h2.FRAME_HEAD.unpack_from
        while end_of_data - position >= h2.FRAME_HEADER_BYTES:
            length_high, length_low, kind, flags, stream_id = read_head(buffer, position)
            length = length_high << 16 | length_low
            if length > max_frame:
                raise H2ConnectionError(h2.FRAME_SIZE_ERROR, f"frame of {length} bytes")
            start = position + h2.FRAME_HEADER_BYTES
            end = start + length
            if end > end_of_data:
                break
            stream_id &= 0x7FFFFFFF
            position = end
            if self._continuing is not None and kind != h2.CONTINUATION:
                raise H2ConnectionError(h2.PROTOCOL_ERROR, "header block interrupted")
            if kind == h2.WINDOW_UPDATE:  # the most frequent frame from tritonclient: no copy
                if length != 4:
                    raise H2ConnectionError(h2.FRAME_SIZE_ERROR, "WINDOW_UPDATE is 4 bytes")
                self._on_window_update(stream_id, h2.WORD.unpack_from(buffer, start)[0] & 0x7FFFFFFF)
                continue
            payload = bytes(buffer[start:end])
            if kind == h2.DATA:
                self._on_data(flags, stream_id, payload)
            elif kind == h2.HEADERS:
                self._on_headers(flags, stream_id, payload)
            elif kind == h2.CONTINUATION:
                self._on_continuation(flags, stream_id, payload)
            elif kind == h2.SETTINGS:
                self._on_settings(flags, stream_id, payload)
            elif kind == h2.PING:
                self._on_ping(flags, stream_id, payload)
            elif kind == h2.RST_STREAM:
                self._on_rst_stream(stream_id, payload)
            elif kind == h2.GOAWAY:
                self._on_goaway(stream_id)
            elif kind == h2.PUSH_PROMISE:
                raise H2ConnectionError(h2.PROTOCOL_ERROR, "clients cannot push")
            elif kind == h2.PRIORITY and len(payload) != 5:
                raise H2ConnectionError(h2.FRAME_SIZE_ERROR, "PRIORITY is 5 bytes")
            # Other frame types (PRIORITY, extensions) are ignored, as RFC 9113 5.5 asks.
        return position

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id % 2 == 0:
            raise H2ConnectionError(h2.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        payload = _unpad(flags, payload)
        if flags & h2.PRIORITY_FLAG:
            payload = payload[5:]
        end_stream = bool(flags & h2.END_STREAM)
        if flags & h2.END_HEADERS:
            self._header_block(stream_id, end_stream, payload)
        else:
            self._continuing = (stream_id, end_stream, bytearray(payload))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuing is None or self._continuing[0] != stream_id:
            raise H2ConnectionError(h2.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        _, end_stream, block = self._continuing
        block += payload
        if len(block) > 4 * self.settings.max_metadata_bytes + 4096:
            raise H2ConnectionError(h2.ENHANCE_YOUR_CALM, "header block too large")
        if flags & h2.END_HEADERS:
            self._continuing = None
            self._header_block(stream_id, end_stream, bytes(block))

    def _header_block(self, stream_id: int, end_stream: bool, block: bytes) -> None:
        call = self.calls.get(stream_id)
        if call is not None or stream_id <= self._last_stream:
            self._reader.trailers(block)  # the client's trailers (or a late block): keep HPACK in step
            if call is None:
                return
            if not end_stream:
                raise H2ConnectionError(h2.PROTOCOL_ERROR, "trailers without END_STREAM")
            self._remote_end(call)
            return
        try:
            head = self._reader.request_head(block)
        except MalformedRequest:
            self._last_stream = stream_id
            self._write(h2.rst_stream(stream_id, h2.PROTOCOL_ERROR))
            return
        self._last_stream = stream_id
        if self.draining or len(self.calls) >= MAX_CONCURRENT_STREAMS:
            self._write(h2.rst_stream(stream_id, h2.REFUSED_STREAM))
            return
        spec = self.hub.methods.get(head.path)
        refusal = refusal_for(head, spec, self.settings)
        if refusal is None and spec is not None:
            call = NativeCall(self, stream_id, spec, head.metadata, self._peer_initial_window, STREAM_WINDOW)
            call.encoding = head.encoding
            self.calls[stream_id] = call
            if head.timeout_s is not None:
                call.deadline = self._loop.call_later(head.timeout_s, self._deadline_passed, call)
            if spec.client_streaming:
                call.task = self._loop.create_task(run_streaming(call, None))
            if end_stream:
                self._remote_end(call)
            return
        status, message, http_status, extra = refusal or (UNIMPLEMENTED, "Method not found!", 200, ())
        head_block = (
            h2.RESPONSE_HEADERS if http_status == 200 else h2.literal(b":status", b"%d" % http_status)
        )
        block = head_block + h2.status_block(status, message, extra)
        self._write(h2.headers_frame(stream_id, block, True, self._peer_max_frame))
        if not end_stream:
            self._write(h2.rst_stream(stream_id, h2.NO_ERROR))

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise H2ConnectionError(h2.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise H2ConnectionError(h2.FLOW_CONTROL_ERROR, "the connection's window was overrun")
        call = self.calls.get(stream_id)
        if call is None or call.recv_ended:
            if call is None and stream_id > self._last_stream:
                raise H2ConnectionError(h2.PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            self._credit(None, size)  # a stream we closed or reset: its bytes still count
            return
        call.recv_window -= size
        if call.recv_window < 0:
            raise H2ConnectionError(h2.FLOW_CONTROL_ERROR, f"stream {stream_id}'s window was overrun")
        payload = _unpad(flags, payload)
        if not call.rejected:
            self._buffered += len(payload)
            call.unconsumed += len(payload)
            call.recv += payload
            self._split_messages(call)
        if flags & h2.END_STREAM:
            self._credit(None, size)  # the stream is done sending: only the connection's window
            self._remote_end(call)
        else:
            self._credit(call, size)

    def _split_messages(self, call: NativeCall) -> None:
        """Complete gRPC messages (1-byte flag, 4-byte length, payload) move to the call's inbox."""
        recv = call.recv
        while len(recv) >= 5:
            compressed = recv[0]
            if compressed > 1 or (compressed and call.encoding in (b"", b"identity")):
                call.rejected = True
                cancel_task(call)
                text = "compressed message without a grpc-encoding" if compressed == 1 else "bad message flag"
                self.finish(call, INTERNAL, text, ACCEPT_ENCODING)
                return
            length = int.from_bytes(recv[1:5], "big")
            if length > self.settings.max_receive_message_bytes:
                call.rejected = True
                cancel_task(call)
                limit = self.settings.max_receive_message_bytes
                text = f"Received message larger than max ({length} vs. {limit})"
                self.finish(call, RESOURCE_EXHAUSTED, text)
                return
            if len(recv) < 5 + length:
                return
            message = bytes(recv[5 : 5 + length])
            if compressed:
                inflated = inflate(message, call.encoding, self.settings.max_receive_message_bytes)
                if isinstance(inflated, str):
                    call.rejected = True
                    cancel_task(call)
                    status = RESOURCE_EXHAUSTED if inflated.startswith("Received") else INTERNAL
                    self.finish(call, status, inflated)
                    return
                message = inflated
            del recv[: 5 + length]
            # The inbox holds the message as the handler will take it (inflated, if it was
            # compressed): count that, so `consumed` gives back exactly what was counted.
            grown = len(message) - length
            self._buffered += grown - 5
            call.unconsumed += grown - 5
            call.inbox.append(message)
            call.inbox_bytes += len(message)
            call.wake()

    def _remote_end(self, call: NativeCall) -> None:
        call.recv_ended = True
        if call.finished:
            return  # its status waits for window; it is forgotten once sent
        if call.spec.client_streaming:
            call.wake()
            return
        if call.recv or len(call.inbox) != 1:
            count = "no" if not call.inbox else "more than one"
            self.finish(call, INTERNAL, f"a unary call's request stream carried {count} message")
            return
        payload = call.inbox.popleft()
        self.consumed(call, len(payload))
        if call.spec.wire_handler is not None:  # the servicer parses (or skips parsing) itself
            call.task = self._loop.create_task(run_unary(call, payload))
            return
        try:
            request = call.spec.request_type.FromString(payload)
        except Exception:
            self.finish(call, INTERNAL, DESERIALIZE_FAILED)
            return
        runner = run_streaming if call.spec.server_streaming else run_unary
        call.task = self._loop.create_task(runner(call, request))

    # ---- flow control, inbound ----------------------------------------------------------------
    def consumed(self, call: NativeCall, size: int) -> None:
        """A handler took `size` bytes of requests: they no longer count against the caps."""
        self._buffered -= size
        call.unconsumed -= size
        call.inbox_bytes -= size
        self._credit(call, 0)

    def _credit(self, call: NativeCall | None, size: int) -> None:
        """Give the client back the window it used, unless it is ahead of the handlers."""
        self._conn_owed += size
        if self._conn_owed >= CONNECTION_WINDOW // 4 and self._buffered <= self.settings.buffer_cap:
            self._write(h2.window_update(0, self._conn_owed))
            self._recv_window += self._conn_owed
            self._conn_owed = 0
        if call is None or call.recv_ended or call.rejected:
            return
        call.owed += size
        if call.owed >= STREAM_WINDOW // 4 and call.inbox_bytes < STREAM_WINDOW:
            self._write(h2.window_update(call.stream_id, call.owed))
            call.recv_window += call.owed
            call.owed = 0


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & h2.PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise H2ConnectionError(h2.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]
