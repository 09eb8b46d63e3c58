"""Keepalive, ping policing and connection age on the native transport (tritonserver's
--grpc-keepalive-* / --grpc-http2-* / --grpc-max-connection-age* flags), frame by frame."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from packserve.frontends.grpc import GrpcOptions
from packserve.frontends.grpc.native_settings import PingPolicy
from tests.fakes.engine import FakeEngine
from tests.frontends.grpc.grpc_server_thread import ServerThread
from tests.frontends.grpc.h2_raw_client import (
    ACK,
    GOAWAY,
    PING,
    RawH2,
    echo_request,
    frame,
    grpc_message,
    ping_burst,
)

ENHANCE_YOUR_CALM, NO_ERROR = 0xB, 0x0


def _serve(engine: FakeEngine, pings: PingPolicy) -> ServerThread:
    running = ServerThread(GrpcOptions(implementation="native", pings=pings))
    running.start(engine)
    return running


@pytest.fixture
def served() -> Iterator[tuple[FakeEngine, list[ServerThread]]]:
    engine, servers = FakeEngine(), []
    yield engine, servers
    for running in servers:
        running.stop()


def _connect(served: tuple[FakeEngine, list[ServerThread]], pings: PingPolicy) -> tuple[ServerThread, RawH2]:
    engine, servers = served
    running = _serve(engine, pings)
    servers.append(running)
    assert running.server is not None
    return running, RawH2(running.server.port)


def _call(client: RawH2, stream_id: int) -> int:
    client.start_call(stream_id, grpc_message(echo_request([1, 2])))
    return client.answer(stream_id).status


def _ping(client: RawH2, payload: bytes) -> tuple[int, int, bytes]:
    """Send a PING; the server's answer: (PING, ACK, payload) or (GOAWAY, error code, debug data)."""
    client.send(frame(PING, 0, 0, payload))
    while (got := client.read_frame()) is not None:
        kind, flags, _, body = got
        if kind == PING and flags & ACK:
            return PING, ACK, body
        if kind == GOAWAY:
            return GOAWAY, int.from_bytes(body[4:8], "big"), body[8:]
    raise AssertionError("the connection closed without an answer")


def test_pings_without_data_in_between_are_struck_out_as_grpc_does(
    served: tuple[FakeEngine, list[ServerThread]],
) -> None:
    running, _ = _connect(served, PingPolicy())  # Triton's defaults: 2 strikes, 2 h while idle
    assert running.server is not None
    answers = ping_burst(running.server.port, 5)
    # The first is free, two strikes are forgiven, the third is one too many: what was read is
    # still answered (all five ACKs, as grpc-core), then GOAWAY, then the connection closes.
    too_many = ("GOAWAY", ENHANCE_YOUR_CALM, b"too_many_pings")
    assert answers == [("ACK", 0, b"%08d" % n) for n in range(5)] + [too_many]
    assert ping_burst(running.server.port, 4)[-1] == too_many
    assert ping_burst(running.server.port, 3)[-1] == ("open", 0, b"")  # within the limit: still open


def test_an_answer_sent_between_pings_forgives_them(served: tuple[FakeEngine, list[ServerThread]]) -> None:
    _, client = _connect(served, PingPolicy())
    for n in range(6):  # a client pinging after every call, as grpc's BDP probes do
        assert _call(client, 2 * n + 1) == 0
        assert _ping(client, b"%08d" % n)[0] == PING
        assert _ping(client, b"again%03d" % n)[0] == PING  # one strike, cleared by the next answer


def test_no_strike_limit_means_pings_are_always_answered(
    served: tuple[FakeEngine, list[ServerThread]],
) -> None:
    _, client = _connect(served, PingPolicy(max_ping_strikes=0))
    assert all(_ping(client, b"%08d" % n)[0] == PING for n in range(20))


def test_keepalive_pings_while_calls_are_open_and_closes_when_unanswered(
    served: tuple[FakeEngine, list[ServerThread]],
) -> None:
    engine, _ = served
    engine.delay_s = 5.0  # a call stays open while the server pings
    _, client = _connect(served, PingPolicy(keepalive_s=0.1, keepalive_timeout_s=0.3))
    client.start_call(1, grpc_message(echo_request([1])))
    started = time.monotonic()
    ping = client.wait_for(PING)
    assert ping is not None and not ping[1] & ACK  # the server's keepalive PING
    goaway = client.wait_for(GOAWAY)  # never acknowledged: closed after the timeout
    assert goaway is not None and int.from_bytes(goaway[3][4:8], "big") == NO_ERROR
    assert 0.2 < time.monotonic() - started < 3.0


def test_keepalive_stays_quiet_without_calls_unless_permitted(
    served: tuple[FakeEngine, list[ServerThread]],
) -> None:
    _, quiet = _connect(served, PingPolicy(keepalive_s=0.05))
    quiet.sock.settimeout(0.6)
    with pytest.raises(TimeoutError):
        quiet.wait_for(PING)  # no call open, keepalive_without_calls off: nothing is sent

    # Permitted: a PING every interval, acknowledged or not answered by data, as tritonserver does
    # (grpc-core sends keepalive PINGs whatever max_pings_without_data says).
    _, chatty = _connect(
        served, PingPolicy(keepalive_s=0.1, keepalive_without_calls=True, max_pings_without_data=2)
    )
    chatty.sock.settimeout(1.0)
    started, times = time.monotonic(), []
    while time.monotonic() - started < 0.75 and (got := chatty.wait_for(PING)) is not None:
        times.append(time.monotonic() - started)
        chatty.send(frame(PING, ACK, 0, got[3]))
    assert len(times) >= 5, times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(0.05 < gap < 0.3 for gap in gaps), gaps


def test_max_connection_age_sends_goaway_then_the_grace_ends_open_calls(
    served: tuple[FakeEngine, list[ServerThread]],
) -> None:
    engine, _ = served
    running, client = _connect(served, PingPolicy(max_connection_age_s=0.3, max_connection_age_grace_s=0.4))
    assert _call(client, 1) == 0
    engine.delay_s = 10.0
    client.start_call(3, grpc_message(echo_request([1])))
    started = time.monotonic()
    goaway = client.wait_for(GOAWAY)
    assert goaway is not None
    assert int.from_bytes(goaway[3][:4], "big") == 3  # the last stream it serves: the open call
    assert int.from_bytes(goaway[3][4:8], "big") == NO_ERROR
    while client.read_frame() is not None:  # closed once the grace is over, the call unanswered
        pass
    assert 0.5 < time.monotonic() - started < 5.0
    assert running.server is not None
    engine.delay_s = 0.0
    fresh = RawH2(running.server.port)  # the client reconnects: a new connection serves
    try:
        assert _call(fresh, 1) == 0
    finally:
        fresh.close()


def test_the_grpcio_transport_gets_the_same_policy_as_channel_arguments() -> None:
    policy = PingPolicy(
        keepalive_s=7200, keepalive_timeout_s=20, keepalive_without_calls=True, max_pings_without_data=0,
        min_ping_interval_without_data_s=300, max_ping_strikes=5, max_connection_age_s=60,
        max_connection_age_grace_s=5,
    )  # fmt: skip
    options = dict(GrpcOptions(implementation="grpcio", pings=policy).channel_options())
    assert options["grpc.keepalive_time_ms"] == 7_200_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 300_000
    assert options["grpc.http2.max_ping_strikes"] == 5
    assert options["grpc.max_connection_age_ms"] == 60_000
    assert options["grpc.max_connection_age_grace_ms"] == 5_000
    assert "grpc.max_connection_age_ms" not in dict(GrpcOptions().channel_options())  # off by default
