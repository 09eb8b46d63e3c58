"""Failed requests: one line each, at a fitting level, rate-limited."""

from __future__ import annotations

import logging

import pytest

from packserve.errors import InvalidArgumentError, ModelExecutionError, QueueFullError
from packserve.frontends.request_log import FailedRequestLog, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_levels_follow_the_status(caplog: pytest.LogCaptureFixture) -> None:
    log = FailedRequestLog()
    caplog.set_level(logging.INFO, logger="packserve.requests")
    log.failed("HTTP", "POST /v2/models/m/infer", InvalidArgumentError("input 'x' missing"))
    log.failed("gRPC", "ModelInfer m", QueueFullError("queue full"))
    try:
        try:
            raise ZeroDivisionError("in model.py")
        except ZeroDivisionError as cause:
            raise ModelExecutionError("model 'm' failed") from cause
    except ModelExecutionError as error:
        log.failed("HTTP", "POST /v2/models/m/infer", error)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels[0] == (logging.INFO, "HTTP POST /v2/models/m/infer failed with 400: input 'x' missing")
    assert levels[1][0] == logging.WARNING and "503" in levels[1][1]
    assert levels[2][0] == logging.ERROR and "500" in levels[2][1]
    assert caplog.records[2].exc_info is not None
    assert "ZeroDivisionError: in model.py" in caplog.text  # the model's own traceback


def test_a_flood_is_cut_and_the_cut_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = FailedRequestLog(burst=5, per_second=1.0, clock=clock)
    caplog.set_level(logging.INFO, logger="packserve.requests")
    for _ in range(1000):
        log.failed("HTTP", "GET /v2/models/x", InvalidArgumentError("bad"))
    assert len(caplog.records) == 5
    clock.now = 1.0
    log.failed("HTTP", "GET /v2/models/x", InvalidArgumentError("bad"))
    assert len(caplog.records) == 6
    assert "(995 similar lines dropped by the rate limit)" in caplog.records[-1].getMessage()


def test_token_bucket_refills_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(burst=2, per_second=10.0, clock=clock)
    assert bucket.take() == 0 and bucket.take() == 0 and bucket.take() is None
    clock.now = 100.0
    assert bucket.take() == 1 and bucket.take() == 0 and bucket.take() is None
