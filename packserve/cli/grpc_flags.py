"""tritonserver's gRPC connection flags (keepalive, ping policing, connection age), with Triton's
names, units (milliseconds) and defaults, turned into the transports' `PingPolicy`."""

from __future__ import annotations

from typing import Annotated

import typer

from packserve.cli import triton_flags
from packserve.frontends.grpc.native_settings import PingPolicy

_MS = {"min": 0, "metavar": "MS"}

KeepaliveTime = Annotated[
    int, typer.Option("--grpc-keepalive-time", help="the server PINGs each connection this often", **_MS)
]
KeepaliveTimeout = Annotated[
    int, typer.Option("--grpc-keepalive-timeout", help="a PING not answered within this closes it", **_MS)
]
KeepalivePermitWithoutCalls = Annotated[
    str,
    typer.Option(
        "--grpc-keepalive-permit-without-calls",
        metavar="BOOL",
        help="PING and accept PINGs while no call is open",
    ),
]
MaxPingsWithoutData = Annotated[
    int,
    typer.Option(
        "--grpc-http2-max-pings-without-data",
        min=0,
        help="non-keepalive server PINGs with no data between (0: any); none are sent natively, "
        "grpc.aio takes it",
    ),
]
MinRecvPingInterval = Annotated[
    int,
    typer.Option(
        "--grpc-http2-min-recv-ping-interval-without-data",
        help="client PINGs closer than this, with no data sent between, are strikes",
        **_MS,
    ),
]
MaxPingStrikes = Annotated[
    int,
    typer.Option(
        "--grpc-http2-max-ping-strikes",
        min=0,
        help="past this many strikes: GOAWAY too_many_pings (0: no limit)",
    ),
]
MaxConnectionAge = Annotated[
    int,
    typer.Option(
        "--grpc-max-connection-age", help="then GOAWAY, so clients reconnect (0: never; +-10% jitter)", **_MS
    ),
]
MaxConnectionAgeGrace = Annotated[
    int,
    typer.Option(
        "--grpc-max-connection-age-grace", help="for the calls open at that GOAWAY (0: no limit)", **_MS
    ),
]

# Triton 2.51's defaults (its --help); connection age is off there too.
KEEPALIVE_TIME_MS = 7_200_000
KEEPALIVE_TIMEOUT_MS = 20_000
MAX_PINGS_WITHOUT_DATA = 2
MIN_RECV_PING_INTERVAL_MS = 300_000
MAX_PING_STRIKES = 2


def ping_policy(
    keepalive_time_ms: int,
    keepalive_timeout_ms: int,
    permit_without_calls: str,
    max_pings_without_data: int,
    min_recv_ping_interval_ms: int,
    max_ping_strikes: int,
    max_connection_age_ms: int,
    max_connection_age_grace_ms: int,
) -> PingPolicy:
    return PingPolicy(
        keepalive_s=keepalive_time_ms / 1000,
        keepalive_timeout_s=keepalive_timeout_ms / 1000,
        keepalive_without_calls=triton_flags.parse_bool(
            permit_without_calls, "--grpc-keepalive-permit-without-calls"
        ),
        max_pings_without_data=max_pings_without_data,
        min_ping_interval_without_data_s=min_recv_ping_interval_ms / 1000,
        max_ping_strikes=max_ping_strikes,
        max_connection_age_s=max_connection_age_ms / 1000,
        max_connection_age_grace_s=max_connection_age_grace_ms / 1000,
    )
