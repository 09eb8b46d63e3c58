"""What the servicers need from a call, whichever transport carries it.

Both gRPC transports hand the same servicer objects a context with this shape: grpc.aio's
`ServicerContext` has it natively, the native transport (native_call.py) implements it. The
method name is the one thing grpc.aio keeps elsewhere; `method_name` finds it on either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn, Protocol

import grpc

DESERIALIZE_FAILED = "Exception deserializing request!"  # grpc's own words


class CallContext(Protocol):
    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        """End the call with `code` and `details`; raises, never returns."""
        ...

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]] | None:
        """The call's metadata: text values as str, "-bin" values as bytes."""
        ...

    async def write(self, message: Any) -> None:
        """Send one response message of a server-streaming call."""
        ...


class AbortError(Exception):
    """Raised by the native context's `abort`: the call ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def method_name(context: Any) -> str:
    """'/package.Service/Method' of the call, or 'call' when the transport does not say."""
    native = getattr(context, "method", None)
    if isinstance(native, str):
        return native
    try:
        details = context._rpc_event.call_details  # grpc.aio keeps the method name only here
        method = details.method
        return method.decode() if isinstance(method, bytes) else str(method)
    except AttributeError:
        return "call"
