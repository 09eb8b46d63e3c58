"""Traffic for the deployment tests: a request built from a model's metadata, and a load of
threads each sending it on a fresh connection, counting what was accepted and what failed."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

REQUEST_TIMEOUT_S = 30.0


def http_status(url: str, timeout: float = 5.0) -> int | str:
    """The status code, or the error's name when nothing answered (refused, reset, timeout)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError as error:
        return type(error).__name__


def infer_body(metadata: dict[str, Any], bad: bool = False) -> bytes:
    """Zeros for every input, batch 1 where the shape is variable; `bad` sends a wrong shape."""
    inputs = []
    for tensor in metadata["inputs"]:
        shape = [1 if d < 0 else d for d in tensor["shape"]]
        if bad:
            shape = [*shape[:-1], shape[-1] + 1]
        count = 1
        for d in shape:
            count *= d
        inputs.append(
            {"name": tensor["name"], "datatype": tensor["datatype"], "shape": shape, "data": [0] * count}
        )
    return json.dumps({"inputs": inputs}).encode()


def model_metadata(host: str, port: int, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{host}:{port}/v2/models/{model}", timeout=10) as reply:
        return dict(json.load(reply))


@dataclass
class LoadCounts:
    ok: int = 0
    failed: int = 0  # connected and sent, but no 200 (or an error after connecting)
    refused: int = 0  # never accepted: the connection was refused
    ok_times: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Load:
    """`threads` senders, each: connect, POST, read, close; until `stop()`. `bad_every` > 0 makes
    every n-th request of a sender malformed on purpose (those count apart, in `rejected`)."""

    def __init__(
        self,
        host: str,
        port: int,
        model: str,
        body: bytes,
        threads: int,
        bad_body: bytes = b"",
        bad_every: int = 0,
        pause_s: float = 0.0,
    ) -> None:
        self.counts = LoadCounts()
        self.rejected = 0
        self._args = (host, port, f"/v2/models/{model}/infer")
        self._body, self._bad_body, self._bad_every, self._pause_s = body, bad_body, bad_every, pause_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadCounts:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)
        return self.counts

    def _run(self) -> None:
        host, port, path = self._args
        sent = 0
        while not self._stop.is_set():
            sent += 1
            bad = self._bad_every > 0 and sent % self._bad_every == 0
            connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
            try:
                connection.connect()
            except ConnectionRefusedError:
                with self._lock:
                    self.counts.refused += 1
                time.sleep(0.01)
                continue
            except OSError as error:
                self._record_failure(f"connect: {error!r}")
                continue
            try:
                connection.request(
                    "POST", path, self._bad_body if bad else self._body, {"Content-Type": "application/json"}
                )
                reply = connection.getresponse()
                reply.read()
                status = reply.status
            except OSError as error:
                self._record_failure(f"after connect: {error!r}")
                continue
            finally:
                connection.close()
            if bad:
                with self._lock:
                    self.rejected += status == 400
                    if status != 400:
                        self.counts.failures.append(f"malformed request answered {status}")
            elif status == 200:
                with self._lock:
                    self.counts.ok += 1
                    self.counts.ok_times.append(time.monotonic())
            else:
                self._record_failure(f"status {status}")
            if self._pause_s:
                time.sleep(self._pause_s)

    def _record_failure(self, what: str) -> None:
        with self._lock:
            self.counts.failed += 1
            self.counts.failures.append(what)


def slow_request(host: str, port: int, model: str, body: bytes, pause_s: float) -> int | str:
    """One request whose body arrives in two halves `pause_s` apart, so it is in flight across
    whatever the server does meanwhile (closing its listeners); its status, or the error's name."""
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    half = len(body) // 2
    try:
        with socket.create_connection((host, port), timeout=REQUEST_TIMEOUT_S) as sock:
            sock.sendall(head + body[:half])
            time.sleep(pause_s)
            sock.sendall(body[half:])
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    except OSError as error:
        return type(error).__name__
    status_line = reply.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 else "no reply"
