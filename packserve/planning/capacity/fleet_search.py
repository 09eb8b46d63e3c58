"""The one yardstick both fleets are measured with: plan at a utilisation, simulate at peak, and
step the utilisation down until the simulated p99 meets the target.

The packed plan and the one-model-per-pod baseline both go through `search` - the same planner
(`planner.plan` with a layout), the same duty-cycle rule, the same simulation (`check_plan`) and the
same acceptance test - so the devices each needs are comparable. The search starts high (the
closed-form rule keeps headroom of its own; the simulation has the last word) and steps down by 10
points, then tries 5 points back up once, so the settled utilisation is within 5 points of the
highest that passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.plan_check import ScenarioSummary, check_plan, plan_pipelines
from packserve.planning.capacity.planner import PlanOptions, plan
from packserve.planning.capacity.simulator import SimResult
from packserve.planning.formats.plan_schema import Plan, gpus
from packserve.planning.formats.profile_schema import Profile

UTILISATION_STEP = 0.1
REFINE_STEP = 0.05
LOWEST_UTILISATION = 0.3

# (what is being simulated, fraction done)
SimulationProgress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class Attempt:
    utilisation: float
    devices: int
    worst_p99_ms: float  # simulated, Poisson arrivals at peak; nan when not simulated
    meets_slo: bool


@dataclass
class Searched:
    plan: Plan
    checked: list[tuple[ScenarioSummary, SimResult]]  # the settled plan's Poisson check ([] unsimulated)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def worst_p99_ms(self) -> float:
        return max((max(s.p99_ms.values()) for s, _ in self.checked), default=float("nan"))


def search(
    profile: Profile,
    options: PlanOptions,
    layout: str,
    simulate: bool = True,
    duration_s: float | None = None,
    on_progress: SimulationProgress | None = None,
) -> Searched:
    """The plan for `layout` at the highest utilisation (from `options.max_utilisation` down)
    whose simulation at peak meets the p99 target; the lowest tried when none does."""
    attempts: list[Attempt] = []

    def attempt(utilisation: float) -> Searched:
        result = plan(profile, replace(options, max_utilisation=utilisation), layout)
        if not simulate:
            return Searched(result, [], attempts)

        def progress(kind: str, fraction: float) -> None:
            if on_progress is not None:
                on_progress(
                    f"simulating {layout.replace('_', '-')} plan at {utilisation:.0%} ({kind})", fraction
                )

        checked = check_plan(
            result, profile, plan_pipelines(result, profile), duration_s=duration_s, kinds=("poisson",),
            on_progress=progress,
        )  # fmt: skip
        summary = checked[0][0]
        attempts.append(
            Attempt(utilisation, gpus(result.pods), max(summary.p99_ms.values()), summary.meets_slo)
        )
        return Searched(result, checked, attempts)

    utilisation = options.max_utilisation
    current = attempt(utilisation)
    if not simulate:
        return current
    start = utilisation
    while not _meets(current) and utilisation - UTILISATION_STEP >= LOWEST_UTILISATION - 1e-9:
        utilisation = round(utilisation - UTILISATION_STEP, 2)
        current = attempt(utilisation)
    if _meets(current) and utilisation < start - 1e-9:
        higher = attempt(round(utilisation + REFINE_STEP, 2))
        if _meets(higher) and gpus(higher.plan.pods) <= gpus(current.plan.pods):
            current = higher
    return current


def _meets(searched: Searched) -> bool:
    return all(s.meets_slo for s, _ in searched.checked)


def p99_for_devices(
    profile: Profile, options: PlanOptions, devices: int, layout: str = "packed", steps: int = 8
) -> float | None:
    """The smallest p99 target (ms) at which the planner's rule fits the fleet in `devices`, at
    `options.max_utilisation` (closed form, not simulated), or None when even 64 x the target does
    not: how far a latency target keeps a plan above the lower bound."""

    def fits(p99_ms: float) -> bool:
        try:
            return gpus(plan(profile, replace(options, p99_ms=p99_ms), layout).pods) <= devices
        except InvalidArgumentError:
            return False

    low, high = options.p99_ms, options.p99_ms * 64
    if fits(low):
        return low
    if not fits(high):
        return None
    for _ in range(steps):
        mid = (low * high) ** 0.5
        if fits(mid):
            high = mid
        else:
            low = mid
    return high
