"""The answering half of a native gRPC connection: a unary answer (HEADERS, DATA, trailers) in
one write, streamed messages and trailers held back while the peer's flow-control windows are shut,
the end of a call (trailers, RST_STREAM when the client is still sending) and its deadline."""

from __future__ import annotations

from packserve.frontends.grpc import h2_frames as h2
from packserve.frontends.grpc.native_call import NativeCall
from packserve.frontends.grpc.native_control import ConnectionBase
from packserve.frontends.grpc.native_settings import DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED

_HEADERS_PREFIX = len(h2.RESPONSE_HEADERS).to_bytes(3, "big") + bytes((h2.HEADERS, h2.END_HEADERS))
_OK_PREFIX = len(h2.OK_TRAILERS).to_bytes(3, "big") + bytes((h2.HEADERS, h2.END_HEADERS | h2.END_STREAM))
_DATA_TYPE = bytes((h2.DATA, 0))


class AnswerWriter(ConnectionBase):
    _buffered: int  # request bytes not yet taken by a handler (kept by GrpcConnection)

    def send_unary(self, call: NativeCall, payload: bytes) -> None:
        """A unary answer: headers, the one message and the OK trailers in one write."""
        size = len(payload)
        if self._refused_as_too_large(call, size):
            return
        body = size + 5
        if (
            call.finished
            or call.headers_sent
            or body > call.send_window
            or body > self.send_window
            or body > self._peer_max_frame
        ):
            self.send_message(call, payload)
            self.finish(call, 0, "")
            return
        call.finished = True
        call.send_window -= body
        self.send_window -= body
        self.data_sent()
        sid = call.stream_id.to_bytes(4, "big")
        self._write(
            b"".join((
                _HEADERS_PREFIX, sid, h2.RESPONSE_HEADERS,
                body.to_bytes(3, "big"), _DATA_TYPE, sid, b"\x00", size.to_bytes(4, "big"), payload,
                _OK_PREFIX, sid, h2.OK_TRAILERS,
            ))
        )  # fmt: skip
        self._closed_locally(call)

    def send_message(self, call: NativeCall, payload: bytes) -> None:
        if call.finished or self._refused_as_too_large(call, len(payload)):
            return
        if not call.headers_sent:
            call.headers_sent = True
            self._write(_HEADERS_PREFIX + call.stream_id.to_bytes(4, "big") + h2.RESPONSE_HEADERS)
        self.data_sent()
        call.pending.append(memoryview(b"\x00" + len(payload).to_bytes(4, "big") + payload))
        self._flush(call)

    def _refused_as_too_large(self, call: NativeCall, size: int) -> bool:
        """A message over the send limit ends its call RESOURCE_EXHAUSTED, in grpc's words."""
        limit = self.settings.max_send_message_bytes
        if size <= limit:
            return False
        self.finish(call, RESOURCE_EXHAUSTED, f"Sent message larger than max ({size} vs. {limit})")
        return True

    def finish(
        self, call: NativeCall, code: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        """End the call with this status, after any DATA still waiting for window."""
        if call.finished:
            return
        call.finished = True
        if call.deadline is not None:
            call.deadline.cancel()
        block = h2.status_block(code, message, extra)
        self.data_sent()
        if not call.headers_sent:
            call.headers_sent = True
            self._write(
                h2.headers_frame(call.stream_id, h2.RESPONSE_HEADERS + block, True, self._peer_max_frame)
            )
            self._closed_locally(call)
            return
        call.trailers = h2.headers_frame(call.stream_id, block, True, self._peer_max_frame)
        self._flush(call)

    def _flush(self, call: NativeCall) -> None:
        """Send what the windows allow of the call's waiting DATA, then its trailers."""
        pending = call.pending
        while pending:
            chunk = pending[0]
            allowed = min(len(chunk), call.send_window, self.send_window, self._peer_max_frame)
            if allowed <= 0:
                self._blocked.add(call)
                return
            self._write(h2.frame(h2.DATA, 0, call.stream_id, bytes(chunk[:allowed])))
            call.send_window -= allowed
            self.send_window -= allowed
            if allowed == len(chunk):
                pending.popleft()
            else:
                pending[0] = chunk[allowed:]
        self._blocked.discard(call)
        call.drained()
        if call.trailers is not None:
            self._write(call.trailers)
            call.trailers = None
            self._closed_locally(call)

    def _closed_locally(self, call: NativeCall) -> None:
        if not call.recv_ended:
            # The answer is complete before the request: tell the client to stop sending (RFC 9113 8.1).
            call.recv_ended = True
            self._write(h2.rst_stream(call.stream_id, h2.NO_ERROR))
        self._forget(call)

    def _forget(self, call: NativeCall) -> None:
        if self.calls.pop(call.stream_id, None) is None:
            return
        self._buffered -= call.unconsumed
        call.unconsumed = 0
        if call.deadline is not None:
            call.deadline.cancel()
        self._blocked.discard(call)
        call.wake()  # a handler waiting for requests or for window sees the call is over
        call.drained()
        if not self.calls:
            self.idle_since = self._loop.time()
            if self.draining:
                self.close()

    def _deadline_passed(self, call: NativeCall) -> None:
        if call.finished:
            return
        cancel_task(call)
        self.finish(call, DEADLINE_EXCEEDED, "Deadline Exceeded")


def cancel_task(call: NativeCall) -> None:
    if call.task is not None and not call.task.done():
        call.task.cancel()
