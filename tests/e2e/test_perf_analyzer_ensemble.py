"""perf_analyzer 2.51, unmodified, against the ensemble `simple_ensemble` of the example repository
served by a live `packserve serve`: over HTTP, gRPC and gRPC streaming it must complete and print
the server-side statistics of the ensemble (queue and compute times) and of its composing model
`simple`, which it finds through the ensemble's config and then asks the statistics endpoint for.

The same over the vision pipeline, with a real JPEG, is in test_vision_stack_served.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.e2e_perf_analyzer import needs_perf_analyzer, run_perf_analyzer
from tests.e2e.e2e_server import LiveServer, LiveServerFactory

pytestmark = needs_perf_analyzer

# Each ensemble request runs `simple` twice (sum/difference, then sum/difference of those).
STEPS_PER_REQUEST = 2


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, example_repository: Path) -> LiveServer:
    return live_server_factory(example_repository)


@pytest.mark.parametrize(
    ("protocol", "streaming"),
    [("http", False), ("grpc", False), ("grpc", True)],
    ids=["http", "grpc", "grpc-streaming"],
)
def test_perf_analyzer_reports_ensemble_and_composing_statistics(
    server: LiveServer, protocol: str, streaming: bool
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    report = run_perf_analyzer(
        "simple_ensemble",
        url,
        protocol=protocol,
        streaming=streaming,
        extra_args=["--measurement-request-count", "50"],
    )
    ensemble = report.server
    requests = ensemble.counts.get("Successful request count", 0)
    assert requests > 0, report.output
    # The ensemble's own row: perf_analyzer sums its queue and compute from the composing models.
    assert {"queue", "compute"} <= set(ensemble.latency_parts_usec), report.output

    assert set(report.composing) == {"simple"}, report.output
    simple = report.composing["simple"]
    assert {"queue", "compute input", "compute infer", "compute output"} <= set(simple.latency_parts_usec), (
        report.output
    )
    assert simple.latency_parts_usec["compute infer"] > 0, report.output
    # perf_analyzer reads the ensemble's and the composing model's statistics a moment apart,
    # so their counts can differ by the few requests in flight between the two reads.
    composing_requests = simple.counts.get("Successful request count", 0)
    expected = STEPS_PER_REQUEST * requests
    assert abs(composing_requests - expected) <= max(8, expected // 20), report.output
    assert simple.counts.get("Inference count", 0) >= simple.counts.get("Execution count", 0) > 0
