"""HTTP and gRPC load at the same time against one live `packserve serve` (the official
`tritonclient.http` and `tritonclient.grpc`, unmodified): every answer is right for its own inputs,
and afterwards the server's books balance - the statistics endpoint (read over both protocols) and
the Prometheus metrics count exactly the requests and rows that were sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.e2e_server import LiveServer, LiveServerFactory, direct_http_session
from tests.e2e.e2e_simple import simple_inputs, simple_operands

MODEL = "simple"
THREADS_PER_PROTOCOL = 4
REQUESTS_PER_THREAD = 50
MAX_ROWS = 3  # batch sizes 1..3, so rows and requests differ and both are checked
# A response can reach the client a moment before the server has recorded its statistics.
SETTLE_TIMEOUT_S = 10.0

HTTP = direct_http_session()


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, example_repository: Path) -> LiveServer:
    return live_server_factory(example_repository)


@dataclass(frozen=True)
class Books:
    """What the server says it did for MODEL: statistics (HTTP and gRPC) and metrics."""

    success: int
    inferences: int
    executions: int
    grpc_success: int
    metric_success: float
    metric_inferences: float
    metric_executions: float

    def minus(self, before: Books) -> Books:
        return Books(*(getattr(self, name) - getattr(before, name) for name in self.__dataclass_fields__))


def _metric(text: str, name: str) -> float:
    # The parser reports a counter's samples as `<name>_total` even where the text has no suffix.
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name in (name, f"{name}_total") and sample.labels.get("model") == MODEL:
                return float(sample.value)
    raise AssertionError(f"metric {name}{{model={MODEL!r}}} not in /metrics:\n{text[:2000]}")


def read_books(server: LiveServer) -> Books:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats: dict[str, Any] = http.get_inference_statistics(MODEL)["model_stats"][0]
        grpc_stats: dict[str, Any] = grpc.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    finally:
        http.close()
        grpc.close()
    metrics = HTTP.get(server.metrics_url, timeout=10)
    metrics.raise_for_status()
    return Books(
        success=int(stats["inference_stats"]["success"]["count"]),
        inferences=int(stats["inference_count"]),
        executions=int(stats["execution_count"]),
        # gRPC's JSON form writes uint64 as strings.
        grpc_success=int(grpc_stats["inference_stats"]["success"].get("count", 0)),
        metric_success=_metric(metrics.text, "nv_inference_request_success"),
        metric_inferences=_metric(metrics.text, "nv_inference_count"),
        metric_executions=_metric(metrics.text, "nv_inference_exec_count"),
    )


def rows_of(request_index: int) -> int:
    return 1 + request_index % MAX_ROWS


def http_worker(server: LiveServer, worker: int) -> int:
    """Send REQUESTS_PER_THREAD requests with distinct inputs over HTTP; check each answer."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        for index in range(REQUESTS_PER_THREAD):
            a, b = simple_operands(rows_of(index), offset=_offset("http", worker, index))
            result = client.infer(MODEL, simple_inputs(a, b))
            _check(a, b, result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1"))
    finally:
        client.close()
    return REQUESTS_PER_THREAD


def grpc_worker(server: LiveServer, worker: int) -> int:
    """The same over gRPC."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for index in range(REQUESTS_PER_THREAD):
            a, b = simple_operands(rows_of(index), offset=_offset("grpc", worker, index))
            inputs = [
                grpcclient.InferInput("INPUT0", list(a.shape), "INT32"),
                grpcclient.InferInput("INPUT1", list(b.shape), "INT32"),
            ]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(b)
            result = client.infer(MODEL, inputs)
            _check(a, b, result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1"))
    finally:
        client.close()
    return REQUESTS_PER_THREAD


def _offset(protocol: str, worker: int, index: int) -> int:
    # Every request of the whole test gets inputs no other request has.
    return (1_000_000 if protocol == "grpc" else 0) + worker * 10_000 + index * 100


def _check(a: np.ndarray, b: np.ndarray, total: np.ndarray | None, difference: np.ndarray | None) -> None:
    assert total is not None and difference is not None
    np.testing.assert_array_equal(total, a + b)
    np.testing.assert_array_equal(difference, a - b)


def wait_for_books(server: LiveServer, settled: Callable[[Books], bool]) -> Books:
    """Read the books until `settled` holds or SETTLE_TIMEOUT_S passes; the last reading."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    books = read_books(server)
    while not settled(books) and time.monotonic() < deadline:
        time.sleep(0.05)
        books = read_books(server)
    return books


def test_concurrent_http_and_grpc_answers_are_right_and_the_books_balance(server: LiveServer) -> None:
    before = read_books(server)
    with ThreadPoolExecutor(2 * THREADS_PER_PROTOCOL) as pool:
        futures = [pool.submit(http_worker, server, w) for w in range(THREADS_PER_PROTOCOL)]
        futures += [pool.submit(grpc_worker, server, w) for w in range(THREADS_PER_PROTOCOL)]
        sent = sum(future.result() for future in futures)
    assert sent == 2 * THREADS_PER_PROTOCOL * REQUESTS_PER_THREAD
    rows = 2 * THREADS_PER_PROTOCOL * sum(rows_of(index) for index in range(REQUESTS_PER_THREAD))

    def settled(books: Books) -> bool:
        delta = books.minus(before)
        counted = (delta.success, delta.grpc_success, delta.metric_success)
        rows_counted = (delta.inferences, delta.metric_inferences)
        return (
            counted == (sent,) * 3
            and rows_counted == (rows,) * 2
            and (delta.metric_executions == delta.executions)
        )

    delta = wait_for_books(server, settled).minus(before)
    assert delta.success == sent
    assert delta.grpc_success == sent
    assert delta.metric_success == sent
    # Rows: a request of n rows counts n inferences, however the batcher grouped them.
    assert delta.inferences == rows
    assert delta.metric_inferences == rows
    assert 0 < delta.executions <= rows
    assert delta.metric_executions == delta.executions
