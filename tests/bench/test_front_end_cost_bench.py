"""bench/front_end_cost.py measures complete calls: every HTTP request answered 200, every gRPC
call answered with a status, through the real front ends."""

from __future__ import annotations

import asyncio

import pytest

from bench import front_end_cost


@pytest.mark.parametrize("measure", [front_end_cost.measure_http, front_end_cost.measure_grpc])
def test_each_front_end_answers_every_call_and_reports_a_cost(measure: object) -> None:
    microseconds = asyncio.run(measure(400))  # type: ignore[operator]
    assert 0 < microseconds < 100_000


def test_an_engine_the_bench_does_not_serve_is_reported_not_hidden() -> None:
    with pytest.raises(AttributeError, match="model_metadata"):
        front_end_cost.InstantEngine().model_metadata  # noqa: B018
