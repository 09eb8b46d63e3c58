"""Settings of the native gRPC transport and the calls it refuses before a handler runs."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import grpc

from packserve.frontends.grpc import h2_frames as h2
from packserve.frontends.grpc.native_headers import RequestHead
from packserve.frontends.grpc.native_methods import MethodSpec
from packserve.frontends.restrictions import Restrictions

# Status codes as numbers, for the trailers.
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
CANCELLED = grpc.StatusCode.CANCELLED.value[0]
INTERNAL = grpc.StatusCode.INTERNAL.value[0]

MAX_CONCURRENT_STREAMS = 256
STREAM_WINDOW = 1 << 20  # what a client may send on one stream before we give window back
CONNECTION_WINDOW = 16 << 20
# The request encodings this server reads (as grpc-core: gzip and deflate through zlib); sent
# with a refusal of any other.
ACCEPTED_ENCODINGS = (b"", b"identity", b"gzip", b"deflate")
ACCEPT_ENCODING = ((b"grpc-accept-encoding", b"identity,deflate,gzip"),)


@dataclass(frozen=True, slots=True)
class PingPolicy:
    """Keepalive, ping policing and connection age: grpc-core's channel arguments of the same
    names (tritonserver's --grpc-keepalive-* / --grpc-http2-* / --grpc-max-connection-age* flags),
    with their defaults. 0 turns a period or a limit off."""

    keepalive_s: float = 0.0  # the server PINGs a connection this often
    keepalive_timeout_s: float = 20.0  # and closes it when the ACK takes longer
    keepalive_without_calls: bool = False  # PING (and accept PINGs) while no call is open
    # PINGs other than keepalive sent in a row without HEADERS or DATA. The native transport sends
    # none (grpc-core exempts keepalive PINGs, so Triton too): passed on to grpc.aio only.
    max_pings_without_data: int = 2
    min_ping_interval_without_data_s: float = 300.0  # client PINGs closer than this are strikes
    max_ping_strikes: int = 2  # past this: GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
    max_connection_age_s: float = 0.0  # then GOAWAY: the client reconnects (to another pod)
    max_connection_age_grace_s: float = 0.0  # calls open at the GOAWAY get this long (0: no limit)


# Without open calls (and keepalive_without_calls off) a client may PING every 2 hours, as grpc-core.
IDLE_PING_INTERVAL_S = 7200.0


@dataclass(frozen=True, slots=True)
class NativeSettings:
    max_receive_message_bytes: int
    max_send_message_bytes: int
    max_metadata_bytes: int
    max_connection_idle_s: float  # 0: never closed for idleness
    pings: PingPolicy = field(default_factory=PingPolicy)
    restrictions: Restrictions = field(default_factory=Restrictions)
    max_frame_size: int = h2.DEFAULT_MAX_FRAME

    @property
    def buffer_cap(self) -> int:
        """Request bytes one connection may hold that no handler has taken yet (beyond a window)."""
        return max(64 << 20, 2 * self.max_receive_message_bytes)


def server_preface(settings: NativeSettings) -> bytes:
    """Our SETTINGS, then the connection window raised from HTTP/2's 64 KiB."""
    return h2.settings_frame(
        {
            h2.ENABLE_PUSH: 0,
            h2.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.MAX_FRAME_SIZE: settings.max_frame_size,
            h2.MAX_HEADER_LIST_SIZE: settings.max_metadata_bytes,
        }
    ) + h2.window_update(0, CONNECTION_WINDOW - h2.DEFAULT_WINDOW)


def refusal_for(
    head: RequestHead, spec: MethodSpec | None, settings: NativeSettings
) -> tuple[int, str, int, tuple[tuple[bytes, bytes], ...]] | None:
    """(gRPC status, message, HTTP status, extra trailer fields) of a call refused from its
    headers, or None when the call may go on."""
    if not head.grpc_content_type:
        return INTERNAL, "content-type is not application/grpc", 415, ()
    if head.size > settings.max_metadata_bytes:
        return (
            RESOURCE_EXHAUSTED,
            f"received initial metadata size exceeds limit ({head.size} vs. {settings.max_metadata_bytes})",
            200,
            (),
        )
    if head.encoding not in ACCEPTED_ENCODINGS:
        encoding = head.encoding.decode("latin-1")
        return UNIMPLEMENTED, f"Compression algorithm '{encoding}' is not supported", 200, ACCEPT_ENCODING
    if spec is None:
        return UNIMPLEMENTED, "Method not found!", 200, ()
    if settings.restrictions:
        refusal = settings.restrictions.grpc_refusal(head.path, head.metadata)
        if refusal is not None:
            return UNAVAILABLE, refusal, 200, ()
    return None


def inflate(message: bytes, encoding: bytes, limit: int) -> bytes | str:
    """A compressed request message (grpc-encoding gzip or deflate) decompressed, at most `limit`
    bytes of it (a small message that inflates past the receive limit is refused like a large one,
    never held whole); a text saying why when it cannot be."""
    wbits = 31 if encoding == b"gzip" else 15  # gRPC's "deflate" is the zlib format (RFC 1950)
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(message, limit + 1)
    except zlib.error as error:
        return f"Failed to decompress the message ({encoding.decode()}): {error}"
    if len(data) > limit or inflater.unconsumed_tail:
        return f"Received message larger than max (more than {limit} bytes once decompressed)"
    if not inflater.eof:
        return f"Failed to decompress the message ({encoding.decode()}): truncated data"
    return data
