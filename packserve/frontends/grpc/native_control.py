"""The connection-level half of the native gRPC transport's HTTP/2 connection: its state, writes,
SETTINGS, PING, WINDOW_UPDATE, RST_STREAM and GOAWAY from the peer, the idle / keepalive timer
and the graceful shutdown (GOAWAY, drain, close). `GrpcConnection` (native_connection.py) adds
streams, requests and answers on top."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import TYPE_CHECKING

from packserve.frontends.grpc import h2_frames as h2
from packserve.frontends.grpc.native_call import NativeCall
from packserve.frontends.grpc.native_headers import HeaderReader
from packserve.frontends.grpc.native_settings import CONNECTION_WINDOW, IDLE_PING_INTERVAL_S, NativeSettings

if TYPE_CHECKING:
    from packserve.frontends.grpc.native_server import ConnectionHub

logger = logging.getLogger(__name__)

# Streams a client may reset while the server still works on them: a burst, then a steady rate.
# Past it the connection ends with GOAWAY ENHANCE_YOUR_CALM (the HTTP/2 "rapid reset" attack:
# opening and cancelling streams costs the client a few bytes and the server a call each; without
# a bound, 50,000 reset streams sent in 0.4 s kept the loop busy for 4.7 s).
RESET_BURST = 200
RESET_RATE_PER_S = 100.0
_TIMER_SLACK_S = 0.001  # a loop timer may fire this much early


class H2ConnectionError(Exception):
    """A connection error (RFC 9113 5.4.1): GOAWAY with `code`, then close."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConnectionBase(asyncio.Protocol):
    def __init__(self, hub: ConnectionHub) -> None:
        self.hub = hub
        self.settings: NativeSettings = hub.settings
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] | None = None  # frames collected while reading one chunk
        self._reader = HeaderReader(self.settings.max_metadata_bytes)
        self.calls: dict[int, NativeCall] = {}
        self._last_stream = 0
        self.send_window = h2.DEFAULT_WINDOW  # the peer's connection window for our DATA
        self._peer_initial_window = h2.DEFAULT_WINDOW
        self._peer_max_frame = h2.DEFAULT_MAX_FRAME
        self._recv_window = CONNECTION_WINDOW  # what the peer may still send us
        self._blocked: set[NativeCall] = set()  # calls with DATA waiting for window
        self.write_paused = False
        self.draining = False
        self.closed = False
        self.idle_since = self._loop.time()
        self._ping_sent_at: float | None = None  # our keepalive PING waiting for its ACK
        self._ping_payload = b""
        self._last_ping_at = self.idle_since  # when we last sent one (or the connection opened)
        self._last_ping_received: float | None = None  # the client's, since we last sent data
        self._ping_strikes = 0
        self.too_many_pings = False
        pings = self.settings.pings
        self._aged = False  # past max_connection_age: GOAWAY sent, the grace runs
        self._age_deadline: float | None = None
        if pings.max_connection_age_s > 0:  # +-10% jitter, as grpc, so a fleet does not reconnect at once
            self._age_deadline = self.idle_since + pings.max_connection_age_s * random.uniform(0.9, 1.1)
        self._timer: asyncio.TimerHandle | None = None
        self._reset_budget = float(RESET_BURST)
        self._reset_budget_at = self.idle_since

    # What the stream half provides.
    def _flush(self, call: NativeCall) -> None:
        raise NotImplementedError

    def _forget(self, call: NativeCall) -> None:
        raise NotImplementedError

    # ---- asyncio.Protocol ------------------------------------------------------------------
    def pause_writing(self) -> None:
        self.write_paused = True
        if self._transport is not None:
            self._transport.pause_reading()  # no new work while the client does not read

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()
        for call in list(self.calls.values()):
            call.drained()

    # ---- writing and closing -----------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """Frames leave together: all written while reading one chunk, or by the callbacks of one
        loop iteration (the answers of one batch), go out in one socket write."""
        out = self._out
        if out is not None:
            out.append(data)
        elif self._transport is not None and not self.closed:
            self._out = [data]
            self._loop.call_soon(self._flush_out)

    def _flush_out(self) -> None:
        out, self._out = self._out, None
        if out and self._transport is not None and not self.closed:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _fail(self, code: int, message: str) -> None:
        """A connection error: GOAWAY naming it, then close (RFC 9113 5.4.1)."""
        logger.info("gRPC connection closed: %s (HTTP/2 error %d)", message, code)
        self._write(h2.goaway(self._last_stream, code, message.encode()[:256]))
        self.close()

    def close(self) -> None:
        """Close after what is written (frames collected from the chunk being read included)."""
        if self._transport is not None and not self.closed:
            self._flush_out()
            self.closed = True
            self._transport.close()

    def shutdown(self) -> None:
        """Graceful: GOAWAY with the last stream taken, finish those, then close."""
        if self.draining:
            return
        self.draining = True
        self._write(h2.goaway(self._last_stream, h2.NO_ERROR))
        if not self.calls:
            self.close()

    # ---- control frames from the peer ------------------------------------------------------------
    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise H2ConnectionError(h2.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & h2.ACK:
            if payload:
                raise H2ConnectionError(h2.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise H2ConnectionError(h2.FRAME_SIZE_ERROR, "SETTINGS length is not a multiple of 6")
        for start in range(0, len(payload), 6):
            key = int.from_bytes(payload[start : start + 2], "big")
            value = int.from_bytes(payload[start + 2 : start + 6], "big")
            if key == h2.INITIAL_WINDOW_SIZE:
                if value > h2.MAX_WINDOW:
                    raise H2ConnectionError(h2.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for call in self.calls.values():
                    call.send_window += delta
            elif key == h2.MAX_FRAME_SIZE:
                if not h2.DEFAULT_MAX_FRAME <= value <= 16_777_215:
                    raise H2ConnectionError(h2.PROTOCOL_ERROR, f"max frame size {value}")
                self._peer_max_frame = value
            elif key == h2.ENABLE_PUSH and value > 1:
                raise H2ConnectionError(h2.PROTOCOL_ERROR, "ENABLE_PUSH is 0 or 1")
            # HEADER_TABLE_SIZE: our blocks never index, so any table size suits them.
        self._write(h2.SETTINGS_ACK)
        self._unblock()

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise H2ConnectionError(h2.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise H2ConnectionError(h2.FRAME_SIZE_ERROR, "PING is 8 bytes")
        if flags & h2.ACK:
            if payload == self._ping_payload and self._ping_sent_at is not None:
                self._ping_sent_at = None
                if self._timer is not None:  # it was set for the ACK's deadline: now the next PING
                    self._timer.cancel()
                self._arm_timer()
            return
        self._write(h2.ping(payload, ack=True))  # acknowledged even when it is one too many, as grpc-core
        if self._ping_strike():
            # As grpc-core: the rest of what was read is still handled, then GOAWAY (its debug data
            # is grpc's words, which make clients back off) and close; see data_received.
            self.too_many_pings = True

    def _ping_strike(self) -> bool:
        """grpc-core's ping policing: a client PING sooner than allowed after the previous one (with
        no HEADERS or DATA sent by us in between) is a strike; past the limit the client is cut."""
        pings = self.settings.pings
        now = self._loop.time()
        idle = not self.calls and not pings.keepalive_without_calls
        allowed = IDLE_PING_INTERVAL_S if idle else pings.min_ping_interval_without_data_s
        last, self._last_ping_received = self._last_ping_received, now
        if last is not None and now - last < allowed:
            self._ping_strikes += 1
        return 0 < pings.max_ping_strikes < self._ping_strikes

    def data_sent(self) -> None:
        """HEADERS or DATA went out: the client's PING strikes start again (as grpc-core's)."""
        self._last_ping_received = None
        self._ping_strikes = 0

    def _on_window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            if increment == 0:
                raise H2ConnectionError(h2.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > h2.MAX_WINDOW:
                raise H2ConnectionError(h2.FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            if self._blocked:
                self._unblock()
            return
        call = self.calls.get(stream_id)
        if call is None:
            return  # a stream already closed: allowed, and nothing to do
        if increment == 0 or call.send_window + increment > h2.MAX_WINDOW:
            self._reset(call, h2.PROTOCOL_ERROR if increment == 0 else h2.FLOW_CONTROL_ERROR)
            return
        call.send_window += increment
        if call.pending or call.trailers is not None:
            self._flush(call)

    def _unblock(self) -> None:
        for call in list(self._blocked):
            if self.send_window <= 0:
                return
            self._flush(call)

    def _on_rst_stream(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(h2.FRAME_SIZE_ERROR, "RST_STREAM is 4 bytes")
        if stream_id == 0 or stream_id > self._last_stream:
            raise H2ConnectionError(h2.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")
        call = self.calls.get(stream_id)
        if call is not None:
            self._count_reset()
            self._cancel(call)

    def _count_reset(self) -> None:
        now = self._loop.time()
        refill = (now - self._reset_budget_at) * RESET_RATE_PER_S
        budget = min(float(RESET_BURST), self._reset_budget + refill)
        self._reset_budget_at = now
        if budget < 1.0:
            raise H2ConnectionError(h2.ENHANCE_YOUR_CALM, "too many streams reset by the client")
        self._reset_budget = budget - 1.0

    def _on_goaway(self, stream_id: int) -> None:
        if stream_id != 0:
            raise H2ConnectionError(h2.PROTOCOL_ERROR, "GOAWAY on a stream")
        self.draining = True  # the client opens no more streams; close once its calls are done
        if not self.calls:
            self.close()

    def _reset(self, call: NativeCall, code: int) -> None:
        """A stream error of ours: RST_STREAM, and the call ends."""
        self._write(h2.rst_stream(call.stream_id, code))
        self._cancel(call)

    def _cancel(self, call: NativeCall) -> None:
        call.finished = call.recv_ended = True
        call.pending.clear()
        call.trailers = None
        self._forget(call)
        if call.task is not None:
            call.task.cancel()
        call.wake()
        call.drained()

    # ---- the one timer: idleness, keepalive, connection age -------------------------------------
    def _arm_timer(self) -> None:
        if self.closed:
            return
        settings, pings = self.settings, self.settings.pings
        now = self._loop.time()
        waits = [settings.max_connection_idle_s] if settings.max_connection_idle_s > 0 else []
        if pings.keepalive_s > 0:
            if self._ping_sent_at is None:
                waits.append(self._last_ping_at + pings.keepalive_s - now)
            elif pings.keepalive_timeout_s > 0:
                waits.append(self._ping_sent_at + pings.keepalive_timeout_s - now)
        if self._age_deadline is not None:
            waits.append(self._age_deadline - now)
        if waits:
            self._timer = self._loop.call_later(max(0.0, min(waits)), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        settings, pings = self.settings, self.settings.pings
        if self._age_deadline is not None and now >= self._age_deadline:
            if self._aged:
                self._fail(h2.NO_ERROR, "max connection age grace passed")  # open calls end CANCELLED
                return
            self._aged = True
            grace = pings.max_connection_age_grace_s
            self._age_deadline = now + grace if grace > 0 else None
            self.shutdown()  # GOAWAY: calls in flight finish, new ones go to a new connection
            if self.closed:
                return
        idle_limit = settings.max_connection_idle_s
        if idle_limit > 0 and not self.calls and now - self.idle_since >= idle_limit:
            self.shutdown()  # grpc's max_connection_idle: GOAWAY, the client reconnects when needed
            return
        if pings.keepalive_s > 0:
            if self._ping_sent_at is not None:
                if pings.keepalive_timeout_s > 0 and now - self._ping_sent_at >= pings.keepalive_timeout_s:
                    self._fail(h2.NO_ERROR, "keepalive PING not acknowledged")
                    return
            elif now - self._last_ping_at >= pings.keepalive_s - _TIMER_SLACK_S:
                self._last_ping_at = now  # the interval runs on, whether a PING goes out now or not
                if self.calls or pings.keepalive_without_calls:
                    self._ping_payload = os.urandom(8)
                    self._ping_sent_at = now
                    self._write(h2.ping(self._ping_payload))
        self._arm_timer()
