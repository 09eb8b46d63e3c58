"""KServe v2 / Triton gRPC front end (grpc.aio) with the standard gRPC health service."""

from packserve.frontends.grpc.server import GrpcOptions, GrpcServer

__all__ = ["GrpcOptions", "GrpcServer"]
