"""InlineExecutionPolicy: when a model's batches move onto the event loop and back, from costs."""

from __future__ import annotations

import pytest

from packserve.core.inline_policy import InlineExecutionPolicy

US = 1_000


def feed_worker(policy: InlineExecutionPolicy, cost_ns: int, times: int) -> list[bool]:
    return [policy.record_worker_execution(cost_ns) for _ in range(times)]


def test_disabled_policy_never_goes_inline() -> None:
    policy = InlineExecutionPolicy(0, window=4)
    assert not policy.enabled
    assert not any(feed_worker(policy, 1, 100))
    assert not policy.inline


def test_goes_inline_after_a_window_of_cheap_worker_executions() -> None:
    policy = InlineExecutionPolicy(100 * US, window=4)
    # Worker costs are inflated by GIL contention, so up to 4 x threshold still qualifies.
    assert feed_worker(policy, 390 * US, 4) == [False, False, False, True]
    assert policy.inline
    assert policy.decided_on_ns == 390 * US
    assert policy.switches == 1


def test_expensive_worker_executions_stay_on_the_workers() -> None:
    policy = InlineExecutionPolicy(100 * US, window=4)
    assert not any(feed_worker(policy, 410 * US, 50))
    assert not policy.inline


def test_one_outlier_does_not_decide() -> None:
    policy = InlineExecutionPolicy(100 * US, window=5)
    costs = [50 * US, 50 * US, 50_000 * US, 50 * US, 50 * US]
    assert [policy.record_worker_execution(c) for c in costs][-1] is True
    assert policy.median_ns == 0  # the window starts over after a switch


def test_inline_stays_while_the_median_is_within_twice_the_threshold() -> None:
    policy = InlineExecutionPolicy(100 * US, window=4)
    feed_worker(policy, 50 * US, 4)
    for cost in (150, 190, 200, 180, 600, 120, 199):  # 600 is a lone outlier under 8 x
        assert not policy.record_inline_execution(cost * US)
    assert policy.inline


def test_back_to_workers_when_inline_median_rises() -> None:
    policy = InlineExecutionPolicy(100 * US, window=4)
    feed_worker(policy, 50 * US, 4)
    results = [policy.record_inline_execution(250 * US) for _ in range(4)]
    assert results == [False, False, False, True]
    assert not policy.inline
    assert policy.decided_on_ns == 250 * US


def test_one_very_slow_inline_execution_ends_the_trial_at_once() -> None:
    policy = InlineExecutionPolicy(100 * US, window=16)
    feed_worker(policy, 50 * US, 16)
    assert policy.record_inline_execution(801 * US)
    assert not policy.inline
    assert policy.decided_on_ns == 801 * US


def test_each_return_to_the_workers_doubles_the_wait_before_the_next_trial() -> None:
    policy = InlineExecutionPolicy(100 * US, window=4)
    feed_worker(policy, 50 * US, 4)
    policy.record_inline_execution(10_000 * US)
    assert feed_worker(policy, 50 * US, 8) == [False] * 7 + [True]
    policy.record_inline_execution(10_000 * US)
    assert feed_worker(policy, 50 * US, 16) == [False] * 15 + [True]


def test_recording_in_the_wrong_mode_is_ignored() -> None:
    policy = InlineExecutionPolicy(100 * US, window=2)
    assert not policy.record_inline_execution(10**9)  # not inline: nothing to judge
    feed_worker(policy, 1, 2)
    assert not policy.record_worker_execution(10**9)  # inline: worker costs are stale
    assert policy.inline


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="inline threshold"):
        InlineExecutionPolicy(-1)
