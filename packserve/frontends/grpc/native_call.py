"""One gRPC call of the native transport: its HTTP/2 stream's state, the `CallContext` the
servicers see (abort, invocation_metadata, method, write), and the coroutine that runs its handler.

The call object is the context itself: one allocation per call. Requests of a client-streaming call
reach the handler through `requests()`, an async iterator over the messages received so far; the
connection hands them over and gives the client more flow-control window as they are consumed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from packserve.frontends.grpc.call_context import DESERIALIZE_FAILED, AbortError
from packserve.frontends.grpc.native_methods import MethodSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from packserve.frontends.grpc.native_connection import GrpcConnection

logger = logging.getLogger(__name__)

UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
INTERNAL = grpc.StatusCode.INTERNAL.value[0]


class NativeCall:
    __slots__ = (
        "_drained",
        "_metadata",
        "_waiter",
        "conn",
        "deadline",
        "encoding",
        "finished",
        "headers_sent",
        "inbox",
        "inbox_bytes",
        "method",
        "owed",
        "pending",
        "recv",
        "recv_ended",
        "recv_window",
        "rejected",
        "send_window",
        "spec",
        "stream_id",
        "task",
        "trailers",
        "unconsumed",
    )  # fmt: skip

    def __init__(
        self,
        conn: GrpcConnection,
        stream_id: int,
        spec: MethodSpec,
        metadata: Sequence[tuple[str, str | bytes]],
        send_window: int,
        recv_window: int,
    ) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.method = spec.path
        self.spec = spec
        self._metadata = metadata
        self.send_window = send_window
        self.recv_window = recv_window
        self.encoding = b""  # the request's grpc-encoding: b"", b"identity", b"gzip" or b"deflate"
        self.recv = bytearray()  # bytes of a message not yet complete
        self.inbox: deque[bytes] = deque()  # complete messages the handler has not taken yet
        self.inbox_bytes = 0
        self.unconsumed = 0  # received and not handed to the handler (recv + inbox), for the cap
        self.owed = 0  # stream window the client has used and not yet been given back
        self.recv_ended = False  # the client half-closed (END_STREAM) or reset the stream
        self.rejected = False  # ended by the server before the request was whole: drop the rest
        self.headers_sent = False
        self.finished = False  # the status is decided: nothing more is sent but queued data
        self.pending: deque[memoryview] = deque()  # DATA waiting for flow-control window
        self.trailers: bytes | None = None  # sent once `pending` is empty
        self.task: asyncio.Task[None] | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None  # a handler waiting for a request
        self._drained: asyncio.Future[None] | None = None  # a handler waiting to write more

    # ---- CallContext ------------------------------------------------------------------------
    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise AbortError(code, details)

    async def write(self, message: Any) -> None:
        if self.finished:
            raise asyncio.CancelledError  # reset by the client or past its deadline: stop producing
        self.conn.send_message(self, message.SerializeToString())
        while (self.pending or self.conn.write_paused) and not self.finished:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    # ---- connection side --------------------------------------------------------------------
    def wake(self) -> None:
        """A request arrived, the stream ended or was reset: let a waiting handler look."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def drained(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def requests(self) -> AsyncIterator[Any]:
        """The request messages of a client-streaming call, parsed as the handler asks for them."""
        parse = self.spec.request_type.FromString
        while True:
            if self.inbox:
                payload = self.inbox.popleft()
                self.conn.consumed(self, len(payload))
                try:
                    message = parse(payload)
                except DecodeError:
                    raise AbortError(grpc.StatusCode.INTERNAL, DESERIALIZE_FAILED) from None
                yield message
            elif self.recv_ended or self.finished:
                return
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
                self._waiter = None


async def run_unary(call: NativeCall, request: Any) -> None:
    """A unary call; `request` is the parsed message, or its bytes for a method whose servicer
    takes them (`MethodSpec.wire_handler`) and answers bytes."""
    conn = call.conn
    spec = call.spec
    try:
        if spec.wire_handler is not None:
            answer = await spec.wire_handler(request, call)
        else:
            answer = (await spec.handler(request, call)).SerializeToString()
        conn.send_unary(call, answer)
    except AbortError as error:
        conn.finish(call, error.code.value[0], error.details)
    except asyncio.CancelledError:
        pass  # reset, past its deadline or the server stopped: whoever cancelled has answered
    except Exception as error:
        _unexpected(call, error)


async def run_streaming(call: NativeCall, request: Any) -> None:
    """Client-, server- or bidirectional streaming: the handler is an async generator (responses
    yielded), or a coroutine that writes through `context.write` and may return the last one."""
    conn = call.conn
    spec = call.spec
    try:
        argument = call.requests() if spec.client_streaming else request
        result = spec.handler(argument, call)
        if hasattr(result, "__anext__"):
            async for message in result:
                await call.write(message)
        else:
            response = await result
            if response is not None and not spec.server_streaming:
                await call.write(response)
        conn.finish(call, 0, "")
    except AbortError as error:
        conn.finish(call, error.code.value[0], error.details)
    except asyncio.CancelledError:
        pass
    except Exception as error:
        _unexpected(call, error)


def _unexpected(call: NativeCall, error: Exception) -> None:
    # The servicers map their own errors; anything else is a bug: logged, UNKNOWN as grpc.aio does.
    logger.exception("gRPC %s failed", call.method)
    call.conn.finish(call, UNKNOWN, f"Unexpected {type(error)}: {error}")
