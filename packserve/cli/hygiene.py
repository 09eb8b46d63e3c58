"""The `packserve serve` flags of connection hygiene and the closed control plane, turned into the
front ends' option objects (kept here so serve.py stays a list of flags)."""

from __future__ import annotations

from typing import Annotated

import typer

from packserve.frontends.http import ConnectionLimits
from packserve.frontends.restrictions import Restrictions

HttpRestrictedApi = Annotated[
    list[str] | None,
    typer.Option(
        "--http-restricted-api",
        help="Triton's form '<category>[,...]:<header>=<value>': those HTTP APIs need the header",
    ),
]
GrpcRestrictedProtocol = Annotated[
    list[str] | None,
    typer.Option(
        "--grpc-restricted-protocol",
        help="as --http-restricted-api, for gRPC (header 'triton-grpc-protocol-<header>')",
    ),
]
MaxConnections = Annotated[
    int, typer.Option("--http-max-connections", min=0, help="open HTTP connections (0: half the fd limit)")
]
HeaderTimeout = Annotated[
    float, typer.Option("--http-header-timeout", min=0.1, help="seconds to send a request's headers (408)")
]
BodyTimeout = Annotated[
    float, typer.Option("--http-body-timeout", min=0.1, help="longest silence inside a request body (408)")
]
KeepAliveTimeout = Annotated[
    float,
    typer.Option("--http-keep-alive-timeout", min=0.1, help="idle keep-alive connections close after this"),
]


def restrictions(specs: list[str] | None, flag: str) -> Restrictions:
    try:
        return Restrictions.parse(specs or (), flag)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


def connection_limits(
    max_connections: int, header_timeout_s: float, body_timeout_s: float, keep_alive_timeout_s: float
) -> ConnectionLimits:
    return ConnectionLimits(
        max_connections=max_connections,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        send_timeout_s=body_timeout_s,
        keep_alive_timeout_s=keep_alive_timeout_s,
    )
