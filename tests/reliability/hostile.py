"""The reliability suite's shared harness: a repository with the models the probes need, a live
server started with chosen flags, raw-socket clients that misbehave on purpose, and readings of the
server process (RSS, open files, limits) from /proc. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import HOST, LiveServer, start_live_server

# A python model that takes ~10 ms per request, one instance, no batching: easy to overload.
SLOW_CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""
SLOW_MODEL = """
import time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            time.sleep(0.01)
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUT", value)]))
        return out
"""
# A small request, a 4 MiB answer: for write back-pressure.
BIG_ANSWER_CONFIG = """
name: "big_answer"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1048576 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""
BIG_ANSWER_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        big = np.ones(1048576, dtype=np.float32)
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUT", big)]) for _ in requests]
"""
BIG_ANSWER_REQUEST = (
    b'{"inputs":[{"name":"IN","shape":[1],"datatype":"FP32","data":[1.0]}],'
    b'"outputs":[{"name":"OUT","parameters":{"binary_data":true}}]}'
)


def write_python_model(root: Path, name: str, config: str, model: str) -> Path:
    folder = root / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(textwrap.dedent(config).lstrip())
    (folder / "1" / "model.py").write_text(textwrap.dedent(model).lstrip())
    return folder


def build_hostile_repository(root: Path) -> Path:
    """The example repository plus `slow` and `big_answer`."""
    build_simple_repository(root)
    write_python_model(root, "slow", SLOW_CONFIG, SLOW_MODEL)
    write_python_model(root, "big_answer", BIG_ANSWER_CONFIG, BIG_ANSWER_MODEL)
    return root


def start_server(
    repository: Path,
    log_dir: Path,
    control_mode: str = "none",
    load_models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    open_file_soft_limit: int | None = None,
) -> LiveServer:
    """A live `packserve serve`; with `open_file_soft_limit` it starts under that soft RLIMIT_NOFILE
    (the child inherits ours, lowered for the moment of the start)."""
    if open_file_soft_limit is None:
        return start_live_server(repository, log_dir, control_mode, load_models, extra_args)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_file_soft_limit, hard))
    try:
        return start_live_server(repository, log_dir, control_mode, load_models, extra_args)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- readings of the server process -------------------------------------------------------
def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def open_file_limits(pid: int) -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of a process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-file limit for pid {pid}")


def settle_rss(pid: int, seconds: float = 4.0) -> float:
    """The server's RSS after memory had `seconds` to be given back (lowest reading)."""
    lowest = rss_mib(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.25)
        lowest = min(lowest, rss_mib(pid))
    return lowest


# ---- misbehaving clients ------------------------------------------------------------------
def connect(port: int, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, timeout_s: float = 15.0, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes the connection (AssertionError if it does not
    within `timeout_s`)."""
    sock.settimeout(timeout_s)
    received = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(received) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open for {timeout_s}s; got {received[:200]!r}")


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send; False once the server has closed the connection."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        return False


def status_of(reply: bytes) -> int:
    head = reply.split(b"\r\n", 1)[0].split()
    assert len(head) >= 2 and head[0].startswith(b"HTTP/1."), f"not an HTTP reply: {reply[:200]!r}"
    return int(head[1])


def get(port: int, path: str, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """A well-behaved one-off GET on a fresh connection: (status, body)."""
    with contextlib.closing(connect(port, timeout_s)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = read_until_closed(sock, timeout_s)
    return status_of(reply), reply.partition(b"\r\n\r\n")[2]


@contextlib.contextmanager
def many_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256 <= hard:  # the test process needs the files too
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 256, hard))
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(connect(port))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
