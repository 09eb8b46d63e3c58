"""Hostile HTTP clients (issue 10's probe table): big URLs and endless headers, idle keep-alive
floods past the fd limit, slowloris, huge or stalled bodies, pipelining without reading. Each one
must be cut off by a limit while a well-behaved client keeps being served.

One server for the module, with short timeouts so the probes stay quick, a connection cap, and a
soft open-file limit of 1,024 at start (the server raises it to the hard limit).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.e2e_server import LiveServer
from tests.reliability.hostile import (
    BIG_ANSWER_REQUEST,
    connect,
    get,
    many_sockets,
    open_file_limits,
    open_files,
    read_until_closed,
    rss_mib,
    send_quietly,
    settle_rss,
    status_of,
)

MAX_CONNECTIONS = 500
# The body timeout leaves room for a loaded CI machine to feed 20 large bodies at once.
TIMEOUTS = ["--http-header-timeout", "1", "--http-body-timeout", "5", "--http-keep-alive-timeout", "2"]


@pytest.fixture(scope="module")
def server(reliability_servers: Callable[..., LiveServer], hostile_repository: Path) -> LiveServer:
    return reliability_servers(
        hostile_repository,
        extra_args=[*TIMEOUTS, "--http-max-connections", str(MAX_CONNECTIONS)],
        open_file_soft_limit=1024,
    )


def _served(server: LiveServer) -> None:
    """A well-behaved client is answered."""
    status, _ = get(server.http_port, "/v2/models/simple/ready")
    assert status == 200


def test_open_file_limit_is_raised_to_the_hard_limit(server: LiveServer) -> None:
    soft, hard = open_file_limits(server.process.pid)
    assert soft == hard, f"soft limit {soft} left below the hard limit {hard}"


def test_big_url_is_refused_at_once_with_414(server: LiveServer) -> None:
    with contextlib.closing(connect(server.http_port)) as sock:
        sock.sendall(b"GET /v2/models/" + b"a" * 20_000)  # and never finish the line
        reply = read_until_closed(sock, timeout_s=10)
    assert status_of(reply) == 414
    _served(server)


def test_endless_headers_are_refused_with_431(server: LiveServer) -> None:
    with contextlib.closing(connect(server.http_port)) as sock:
        send_quietly(sock, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        for i in range(2_000):  # about 100 KiB of headers, far past the limit, never ending
            if not send_quietly(sock, b"X-Filler-%d: %s\r\n" % (i, b"v" * 40)):
                break
        reply = read_until_closed(sock, timeout_s=10)
    assert status_of(reply) == 431
    with contextlib.closing(connect(server.http_port)) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n" + b"X-A: b\r\n" * 150 + b"\r\n")
        assert status_of(read_until_closed(sock, timeout_s=10)) == 431
    _served(server)


def test_one_endless_client_does_not_stall_others(server: LiveServer) -> None:
    stop = threading.Event()

    def endless() -> None:
        with contextlib.suppress(OSError), contextlib.closing(connect(server.http_port)) as sock:
            sock.sendall(b"GET /")
            while not stop.is_set() and send_quietly(sock, b"a" * 4096):
                pass

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    try:
        for _ in range(20):
            _served(server)
    finally:
        stop.set()
        thread.join(timeout=10)


def test_idle_keep_alive_flood_past_the_fd_limit(server: LiveServer) -> None:
    """1,100 idle connections (more than the 1,024 the server started with, more than its cap):
    new clients are still served, the server holds at most its cap, and idle ones are closed."""
    pid = server.process.pid
    with many_sockets(server.http_port, 1_100) as idle:
        time.sleep(0.5)
        _served(server)
        assert open_files(pid) < MAX_CONNECTIONS + 100  # the cap (plus the server's own files)
        # The server closes connections that send nothing (header timeout) / stay idle.
        for sock in idle[-50:]:
            reply = read_until_closed(sock, timeout_s=15)
            assert not reply or status_of(reply) == 408
    _served(server)


def test_keep_alive_idle_timeout_closes_the_connection(server: LiveServer) -> None:
    with contextlib.closing(connect(server.http_port)) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        first = sock.recv(65536)
        assert status_of(first) == 200
        assert read_until_closed(sock, timeout_s=15) == b""  # closed after 2 s of idleness


def test_slowloris_sockets_are_cut_off(server: LiveServer) -> None:
    with many_sockets(server.http_port, 200) as slow:
        for sock in slow:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        cut = 0
        for _ in range(40):  # one header byte every 0.1 s per socket, for at most ~4 s
            for sock in slow:
                if not send_quietly(sock, b"X"):
                    cut += 1
            if cut >= len(slow):
                break
            time.sleep(0.1)
        _served(server)
        replies = [read_until_closed(sock, timeout_s=15) for sock in slow]
    assert all(not reply or status_of(reply) == 408 for reply in replies)
    assert any(replies), "slowloris sockets get a 408 before the close"


def test_huge_content_length_is_refused_before_the_body(server: LiveServer) -> None:
    with contextlib.closing(connect(server.http_port)) as sock:
        sock.sendall(
            b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n"
        )
        reply = read_until_closed(sock, timeout_s=10)  # and the client sends nothing more
    assert status_of(reply) == 413


def test_stalled_body_times_out_with_408(server: LiveServer) -> None:
    with contextlib.closing(connect(server.http_port)) as sock:
        sock.sendall(b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        reply = read_until_closed(sock, timeout_s=15)
    assert status_of(reply) == 408


def test_abandoned_partial_bodies_give_their_memory_back(server: LiveServer) -> None:
    """20 clients send 59 of 60 MiB and stop: the server cuts them off (body timeout) and its RSS
    comes back near where it started, instead of holding over a GiB."""
    pid = server.process.pid
    before = settle_rss(pid, 1.0)
    chunk = b"0" * (1 << 20)
    head = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (60 << 20)
    sent = [0] * 20

    def send_most(index: int, sock: socket.socket) -> None:
        # One thread per client, so no client falls silent longer than the body timeout.
        if send_quietly(sock, head):
            for _ in range(59):
                if not send_quietly(sock, chunk):
                    return
                sent[index] += 1

    with many_sockets(server.http_port, 20) as clients:
        threads = [threading.Thread(target=send_most, args=item, daemon=True) for item in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        peak = rss_mib(pid)
        for sock in clients:
            read_until_closed(sock, timeout_s=20)
    after = settle_rss(pid, 4.0)
    assert sum(sent) > 20 * 50, f"clients were cut off early: {sent}"
    assert peak - before > 500, f"the bodies were not buffered? {before:.0f} -> {peak:.0f} MiB"
    assert after - before < 200, f"RSS {before:.0f} -> {peak:.0f} -> {after:.0f} MiB: not given back"
    _served(server)


def test_pipelining_without_reading_keeps_memory_bounded(server: LiveServer) -> None:
    """100 pipelined requests for 4 MiB answers, none read: the server stops answering (and
    reading) while its write buffer is full, so memory does not grow by 400 MiB."""
    pid = server.process.pid
    before = settle_rss(pid, 1.0)
    request = (
        b"POST /v2/models/big_answer/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BIG_ANSWER_REQUEST), BIG_ANSWER_REQUEST)
    )
    with contextlib.closing(connect(server.http_port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(5)
        with contextlib.suppress(TimeoutError):
            for _ in range(100):
                sock.sendall(request)
        time.sleep(3)
        peak = rss_mib(pid)
        _served(server)
    assert peak - before < 150, f"RSS grew {before:.0f} -> {peak:.0f} MiB for an unread pipeline"
