"""`grpc.health.v1.Health`: SERVING while the engine is ready, NOT_SERVING otherwise.

Answers are computed from the engine on each call rather than pushed, so they can never go stale;
`Watch` polls for changes. Once the server starts shutting down every answer is NOT_SERVING.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from packserve.core.engine_api import EngineApi
from packserve.frontends.grpc.call_context import CallContext

INFERENCE_SERVICE = "inference.GRPCInferenceService"
# "" is the whole server, by the health protocol's convention.
_KNOWN_SERVICES = ("", INFERENCE_SERVICE)
_WATCH_POLL_S = 1.0


class EngineHealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self, engine: EngineApi, watch_poll_s: float = _WATCH_POLL_S) -> None:
        self._engine = engine
        self._watch_poll_s = watch_poll_s
        self._shutting_down = False

    def enter_shutdown(self) -> None:
        self._shutting_down = True

    def _status(self) -> Any:
        if not self._shutting_down and self._engine.is_ready():
            return health_pb2.HealthCheckResponse.SERVING
        return health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request: Any, context: CallContext) -> Any:
        if request.service not in _KNOWN_SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{request.service}'")
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(self, request: Any, context: CallContext) -> None:
        last = None
        while True:
            if request.service in _KNOWN_SERVICES:
                status = self._status()
            else:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            await asyncio.sleep(self._watch_poll_s)
