"""KServe v2 / Triton gRPC front end (a native HTTP/2 transport, or grpc.aio) with the standard
gRPC health service."""

from packserve.frontends.grpc.server import IMPLEMENTATIONS as GRPC_IMPLEMENTATIONS
from packserve.frontends.grpc.server import GrpcOptions, GrpcServer

__all__ = ["GRPC_IMPLEMENTATIONS", "GrpcOptions", "GrpcServer"]
