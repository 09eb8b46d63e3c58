"""The method table of the native gRPC transport: '/package.Service/Method' -> the servicer's
handler, its request type and its streaming shape, read from the services' proto descriptors, so
the table cannot drift from the servicers grpc.aio serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from grpc_health.v1 import health_pb2
from tritonclient.grpc import service_pb2


@dataclass(frozen=True, slots=True)
class MethodSpec:
    path: str
    handler: Callable[..., Any]
    request_type: Any  # the generated message class
    client_streaming: bool
    server_streaming: bool
    # A unary method whose servicer also takes the request's bytes and answers bytes, deciding
    # itself whether protobuf is needed (ModelInfer: codec_wire.py).
    wire_handler: Callable[..., Any] | None = None


_WIRE_HANDLERS = {"/inference.GRPCInferenceService/ModelInfer": "model_infer_wire"}


def _service_methods(module: ModuleType, service: str, servicer: object) -> dict[str, MethodSpec]:
    descriptor = module.DESCRIPTOR.services_by_name[service]
    table = {}
    for method in descriptor.methods:
        path = f"/{descriptor.full_name}/{method.name}"
        wire_name = _WIRE_HANDLERS.get(path)
        table[path] = MethodSpec(
            path=path,
            handler=getattr(servicer, method.name),
            request_type=getattr(module, method.input_type.name),
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
            wire_handler=getattr(servicer, wire_name, None) if wire_name else None,
        )
    return table


def method_table(inference: object, health: object) -> dict[str, MethodSpec]:
    """inference.GRPCInferenceService and grpc.health.v1.Health, as their servicers implement them."""
    return {
        **_service_methods(service_pb2, "GRPCInferenceService", inference),
        **_service_methods(health_pb2, "Health", health),
    }
