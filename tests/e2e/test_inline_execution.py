"""`--inline-execution-us` end to end: a cheap CPU model served by `packserve serve` moves its
batches onto the event loop (and says so in the log) and still answers right; 0 turns it off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.e2e.e2e_server import LiveServer, LiveServerFactory

INLINE_LOG = "model 'simple': batches cost"
GOING_INLINE = "trying them on the event loop"


def add_sub_many(server: LiveServer, count: int) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        for step in range(count):
            a = np.arange(16, dtype=np.int32).reshape(1, 16) + step
            b = np.full((1, 16), 3, dtype=np.int32)
            inputs = [
                httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                httpclient.InferInput("INPUT1", [1, 16], "INT32"),
            ]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(b)
            result = client.infer("simple", inputs)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("threshold_us", "inline_expected"), [(1_000_000, True), (0, False)], ids=["generous", "off"]
)
def test_cheap_model_runs_inline_only_when_allowed(
    live_server_factory: LiveServerFactory, example_repository: Path, threshold_us: int, inline_expected: bool
) -> None:
    server = live_server_factory(example_repository, extra_args=["--inline-execution-us", str(threshold_us)])
    # 16 executions to decide, then more that run wherever it decided.
    add_sub_many(server, 40)
    going_inline = [line for line in server.log().splitlines() if INLINE_LOG in line and GOING_INLINE in line]
    assert bool(going_inline) is inline_expected
