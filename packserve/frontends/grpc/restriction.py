"""`--grpc-restricted-protocol` as a grpc.aio interceptor: a call of a restricted category without
its `triton-grpc-protocol-<key>` header ends UNAVAILABLE before the servicer sees it (Triton's
status and words)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from packserve.frontends.restrictions import Restrictions


class RestrictionInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, restrictions: Restrictions) -> None:
        self._restrictions = restrictions

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata or ()  # type: ignore[attr-defined]
        refusal = self._restrictions.grpc_refusal(handler_call_details.method, metadata)  # type: ignore[attr-defined]
        if refusal is None or handler is None:
            return handler
        return _refusing(handler, refusal)


def _refusing(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **serializers)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **serializers)
    return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
