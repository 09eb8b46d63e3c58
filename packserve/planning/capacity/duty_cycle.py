"""Nexus's duty-cycle rule for models that share one device, and the settings it implies.

Models on one device take turns: in each duty cycle of length d every model runs one batch.
A setting is feasible when the batches fit the cycle (sum of occupancies <= d), each batch holds the
arrivals of one cycle (with Poisson arrivals: the `quantile` of the count, so overflow is rare), and
a request waits at most one cycle before its batch runs (d + batch latency <= the model's budget).
For a fixed d the models choose independently, so trying every d at which some option's bound binds
finds a feasible setting whenever one exists. Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import product

import numpy as np

from packserve.planning.formats.profile_schema import ModelProfile

# Beyond this many combinations the memory-aware search falls back to the per-model fastest option.
_COMBINATION_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class Option:
    """One measured way to run a model: request batch size and instance count."""

    batch_size: int
    instances: int
    occupancy_ms: float  # device time per batch (in a plan: per cycle, at the mean batch)
    latency_ms: float  # time from batch start to results
    memory_bytes: int
    # GPU plans: host CPU time one batch costs (decode, pre/post-processing, protocol), as measured;
    # on a GPU node it is charged against the node's cores. 0 on CPU plans (occupancy is CPU time).
    host_cpu_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelSetting:
    model: str
    option: Option
    rate_per_s: float  # calls per second this model receives in one pod
    max_queue_delay_us: int
    predicted_p99_ms: float  # duty cycle + batch latency
    utilisation: float  # fraction of the device this model keeps busy


@dataclass(frozen=True, slots=True)
class GroupSetting:
    duty_cycle_ms: float
    models: tuple[ModelSetting, ...]
    # Fraction of the device taken by per-request serving overhead (front end, decode, encode).
    overhead_utilisation: float = 0.0

    @property
    def utilisation(self) -> float:
        return sum(m.utilisation for m in self.models) + self.overhead_utilisation

    @property
    def memory_bytes(self) -> int:
        return sum(m.option.memory_bytes for m in self.models)


def options_of(model: ModelProfile, cpu_scale: float = 0.0) -> list[Option]:
    """The measured options of a model. On a GPU a batch occupies the device for b / throughput.
    On a CPU (`cpu_scale` > 0) a batch occupies a core for its CPU time, times `cpu_scale`, as
    measured with the most instances profiled at that batch size - every core busy, as in serving,
    where one core's work slows the others (shared caches and memory bandwidth, or SMT siblings of
    a virtual machine: on the 2-core test machine a text detector cost 146 ms of CPU alone and 189
    ms with the other core busy). Its latency is that time too when the measured wall time is
    shorter (it cannot run faster than its own CPU work on one core per instance)."""
    busiest: dict[int, tuple[int, float]] = {}
    for point in model.points:
        if point.cpu_ms > 0 and point.instances >= busiest.get(point.batch_size, (0, 0.0))[0]:
            busiest[point.batch_size] = (point.instances, point.cpu_ms)
    options = []
    for point in model.points:
        if point.throughput_per_s <= 0:
            continue
        latency = point.compute_ms if point.compute_ms > 0 else point.occupancy_ms * point.instances
        occupancy = point.occupancy_ms
        if cpu_scale > 0 and point.cpu_ms > 0:
            occupancy = busiest[point.batch_size][1] * cpu_scale
            latency = max(latency, occupancy / point.instances)
        options.append(
            Option(
                point.batch_size,
                point.instances,
                occupancy,
                max(latency, occupancy),
                point.memory_bytes,
                host_cpu_ms=point.cpu_ms if cpu_scale <= 0 else 0.0,
            )
        )
    return options


def poisson_quantile(mean: float, quantile: float) -> int:
    """Smallest k with P(Poisson(mean) <= k) >= quantile."""
    if mean <= 0:
        return 0
    if mean > 500:  # normal approximation with continuity correction; exact sums underflow here
        z = _normal_quantile(quantile)
        return max(0, math.ceil(mean + z * math.sqrt(mean) - 0.5))
    pmf = math.exp(-mean)
    cumulative = pmf
    k = 0
    while cumulative < quantile:
        k += 1
        pmf *= mean / k
        cumulative += pmf
    return k


def _normal_quantile(p: float) -> float:
    low, high = -10.0, 10.0
    for _ in range(80):
        mid = (low + high) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            low = mid
        else:
            high = mid
    return high


@lru_cache(maxsize=4096)
def max_mean_arrivals(batch_size: int, quantile: float) -> float:
    """Largest mean Poisson count per cycle whose `quantile` still fits in one batch."""
    low, high = 0.0, float(batch_size)
    if poisson_quantile(high, quantile) <= batch_size:
        return high
    for _ in range(60):
        mid = (low + high) / 2
        if poisson_quantile(mid, quantile) <= batch_size:
            low = mid
        else:
            high = mid
    return low


def _cycle_bound_ms(option: Option, rate_per_s: float, budget_ms: float, quantile: float) -> float:
    """The longest duty cycle this option allows: batch filling and latency budget together."""
    fill = (
        math.inf if rate_per_s <= 0 else 1000.0 * max_mean_arrivals(option.batch_size, quantile) / rate_per_s
    )
    return min(fill, budget_ms - option.latency_ms)


def expected_occupancy_ms(option: Option, same_model: Sequence[Option], rows: float) -> float:
    """Mean device time per cycle for `rows` mean arrivals on `option`'s instance count,
    interpolated between measured batch sizes; fixed costs make small batches dearer."""
    measured = sorted((o.batch_size, o.occupancy_ms) for o in same_model if o.instances == option.instances)
    sizes = [float(b) for b, _ in measured]
    times = [t for _, t in measured]
    if rows < 1.0:
        # Fewer than one arrival per cycle: a batch of one runs only in the cycles that have one.
        return rows * float(np.interp(1.0, sizes, times))
    return float(np.interp(rows, sizes, times))


def plan_group(
    options: Mapping[str, Sequence[Option]],
    rates_per_s: Mapping[str, float],
    budgets_ms: Mapping[str, float],
    *,
    memory_limit: int,
    quantile: float = 0.99,
    max_utilisation: float = 0.8,
    capacity: float = 1.0,
    overhead_ms_per_s: float = 0.0,
) -> GroupSetting | None:
    """The best feasible setting for models sharing one device at these per-device rates, or None.

    Within a cycle d each model runs one batch of its mean arrivals; those batches must fit in
    `max_utilisation` x `capacity` x d (headroom for Poisson bursts; `capacity` is how many batches
    the device runs at once: 1 for a GPU, its cores for a CPU, where occupancy is CPU time), while
    the batch cap (the `quantile` of arrivals) and d + batch latency <= budget bound d from above.
    Longer cycles amortise fixed costs, so only the cycle lengths where a bound binds need trying.
    Among feasible cycles it keeps the one with the most latency margin (smallest worst ratio of
    predicted latency to budget). `overhead_ms_per_s`: device time per second the pipelines'
    per-request serving overhead takes on this device, which the batches cannot have.
    """
    names = sorted(options)
    bounds = {
        n: [(o, _cycle_bound_ms(o, rates_per_s[n], budgets_ms[n], quantile)) for o in options[n]]
        for n in names
    }
    candidates = sorted({b for n in names for _, b in bounds[n] if 0 < b < math.inf})
    best: tuple[float, GroupSetting] | None = None
    for cycle in candidates:
        costed = {
            n: [
                replace(o, occupancy_ms=expected_occupancy_ms(o, options[n], rates_per_s[n] * cycle / 1000.0))
                for o, b in bounds[n]
                if b >= cycle
            ]
            for n in names
        }
        if any(not c for c in costed.values()):
            continue
        chosen = _choose_within_memory(costed, memory_limit)
        overhead_ms = overhead_ms_per_s * cycle / 1000.0
        if chosen is None or sum(o.occupancy_ms for o in chosen.values()) + overhead_ms > (
            max_utilisation * capacity * cycle
        ):
            continue
        setting = replace(
            _describe(cycle, chosen, rates_per_s, capacity),
            overhead_utilisation=overhead_ms / (cycle * capacity),
        )
        worst = max(s.predicted_p99_ms / budgets_ms[s.model] for s in setting.models)
        if best is None or worst < best[0]:
            best = (worst, setting)
    return None if best is None else best[1]


def _choose_within_memory(
    eligible: Mapping[str, list[Option]], memory_limit: int
) -> dict[str, Option] | None:
    # Among equal costs the largest batch cap wins: more room for bursts at the same device time.
    fastest = {
        n: min(opts, key=lambda o: (o.occupancy_ms, o.memory_bytes, -o.batch_size))
        for n, opts in eligible.items()
    }
    if sum(o.memory_bytes for o in fastest.values()) <= memory_limit:
        return fastest
    # Keep only options no other option beats on both occupancy and memory, then search them all.
    fronts = {n: _pareto(opts) for n, opts in eligible.items()}
    if math.prod(len(f) for f in fronts.values()) > _COMBINATION_LIMIT:
        leanest = {
            n: min(opts, key=lambda o: (o.memory_bytes, o.occupancy_ms)) for n, opts in eligible.items()
        }
        return leanest if sum(o.memory_bytes for o in leanest.values()) <= memory_limit else None
    names = list(fronts)
    best: dict[str, Option] | None = None
    best_occupancy = math.inf
    for combo in product(*(fronts[n] for n in names)):
        if sum(o.memory_bytes for o in combo) > memory_limit:
            continue
        occupancy = sum(o.occupancy_ms for o in combo)
        if occupancy < best_occupancy:
            best, best_occupancy = dict(zip(names, combo, strict=True)), occupancy
    return best


def _pareto(options: list[Option]) -> list[Option]:
    front: list[Option] = []
    for option in sorted(options, key=lambda o: (o.memory_bytes, o.occupancy_ms)):
        if not front or option.occupancy_ms < front[-1].occupancy_ms:
            front.append(option)
    return front


def _describe(
    cycle_ms: float, chosen: Mapping[str, Option], rates_per_s: Mapping[str, float], capacity: float
) -> GroupSetting:
    # Triton-style batchers run freely rather than in Nexus's coordinated turns: a batch leaves when
    # its oldest request waited max_queue_delay and an instance is free. Waiting one cycle less the
    # model's own batch time makes each batch collect about one cycle of arrivals.
    settings = tuple(
        ModelSetting(
            model=name,
            option=option,
            rate_per_s=rates_per_s[name],
            max_queue_delay_us=max(0, round((cycle_ms - option.occupancy_ms) * 1000)),
            predicted_p99_ms=cycle_ms + option.latency_ms,
            utilisation=option.occupancy_ms / (cycle_ms * capacity),
        )
        for name, option in sorted(chosen.items())
    )
    return GroupSetting(duty_cycle_ms=cycle_ms, models=settings)
