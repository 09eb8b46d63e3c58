"""Discrete-event check of a plan (SimPy) driving packserve's real batcher decision.

The whole fleet is simulated: each pod replica has one device that the batches of its models take
turns on, and per model a `PendingQueue` that `packserve.core.batching.decide_batch` reads with a
`FakeClock` set to simulated time - the same code the server runs. A pipeline request goes to one
replica of its pod type (a pipeline runs in one process) and its steps run as their inputs are
ready. Service time of a batch is the profiled device time, interpolated between measured sizes.
A pipeline's serving overhead (front end, request decode, response encode) runs on the replica's
device as each request arrives, before its first step: on a CPU pod it shares the cores with the
batches; on a GPU it is a plain delay (host work, not device time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from packserve.core.batching import Batch, PendingItem, PendingQueue, Wait, decide_batch
from packserve.core.clock import FakeClock
from packserve.errors import InvalidArgumentError
from packserve.model_spec import BatchingPolicy
from packserve.planning.capacity.sim_devices import ExclusiveDevice, SharedCores, SimDevice
from packserve.planning.capacity.workload import Pipeline

NS_PER_S = 1_000_000_000
ServiceTime = Callable[[int], float]  # batch rows -> seconds of device time


@dataclass(frozen=True, slots=True)
class SimModel:
    name: str
    max_batch_size: int  # rows per batch; 1 for models that do not batch
    max_queue_delay_us: int
    instances: int
    service_s: ServiceTime
    preferred_batch_sizes: tuple[int, ...] = ()
    # Fraction of the model's calls this pod kind takes, when several pod kinds serve the model
    # (per-model replication: dedicated pods plus a share packed with other models).
    share: float = 1.0


@dataclass(frozen=True, slots=True)
class SimPod:
    name: str
    replicas: int
    models: tuple[SimModel, ...]
    capacity: float = 1.0  # batches the device runs at once: 1 for a GPU, cores for a CPU pod
    # True for a CPU pod: running batches share the cores (processor sharing) instead of queueing
    # for a slot; fractional capacity then means part of a machine.
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Arrivals:
    """'poisson'; 'mmpp': a two-state Markov-modulated Poisson process with the same mean rate,
    `burst` times the mean while in its high state (mean `high_s` seconds) and less in its low
    state (mean `low_s` seconds); or 'closed': `clients` clients that each send the next request
    when the last one returns (a load generator at fixed concurrency; the rate is ignored), which
    finds a pod's saturation throughput."""

    kind: str = "poisson"
    burst: float = 2.0
    high_s: float = 1.0
    low_s: float = 3.0
    clients: int = 8


@dataclass(frozen=True, slots=True)
class SimOptions:
    requests_per_s: float
    duration_s: float = 30.0
    warmup_s: float = 2.0
    arrivals: Arrivals = field(default_factory=Arrivals)
    seed: int = 0
    # Network round trip a step pays when its model runs in another pod than the request's entry.
    hop_ms: float = 0.0
    # Called with the fraction of simulated time done, about 50 times per run (progress display).
    on_progress: Callable[[float], None] | None = None


@dataclass(frozen=True)
class SimResult:
    latencies_ms: dict[str, np.ndarray]  # per pipeline, requests that arrived after the warm-up
    utilisation: dict[str, float]  # per pod type, mean busy fraction of its devices
    mean_batch: dict[str, float]  # per model
    rejected: int
    completed_per_s: float = 0.0  # requests finished per second after the warm-up

    def percentile_ms(self, pipeline: str, q: float) -> float:
        values = self.latencies_ms[pipeline]
        return float(np.percentile(values, q)) if len(values) else math.nan

    def all_latencies_ms(self) -> np.ndarray:
        arrays = [a for a in self.latencies_ms.values() if len(a)]
        return np.concatenate(arrays) if arrays else np.empty(0)


def interpolated_service(points: Mapping[int, float]) -> ServiceTime:
    """Seconds per batch from measured {batch size: ms}, linear between and beyond the sizes."""
    if not points:
        raise InvalidArgumentError("a simulated model needs at least one measured batch size")
    sizes = np.array(sorted(points), dtype=float)
    times = np.array([points[int(s)] for s in sizes], dtype=float) / 1000.0

    def service(rows: int) -> float:
        if len(sizes) == 1:
            return float(times[0] * rows / sizes[0]) if rows > sizes[0] else float(times[0])
        if rows > sizes[-1]:  # extrapolate with the last measured per-row slope
            slope = (times[-1] - times[-2]) / (sizes[-1] - sizes[-2])
            return float(times[-1] + slope * (rows - sizes[-1]))
        return float(np.interp(rows, sizes, times))

    return service


class _Replica:
    """One device and the batchers of the models on it."""

    def __init__(
        self,
        env: simpy.Environment,
        clock: FakeClock,
        models: tuple[SimModel, ...],
        stats: _Stats,
        capacity: float = 1.0,
        shared: bool = False,
        kind: str = "",
    ) -> None:
        self.env = env
        self.kind = kind  # the pod kind this replica belongs to
        self.device: SimDevice = (
            SharedCores(env, capacity) if shared else ExclusiveDevice(env, max(1, round(capacity)))
        )
        self.queues: dict[str, _ModelQueue] = {}
        for model in models:
            queue = _ModelQueue(env, clock, model, self.device, stats)
            self.queues[model.name] = queue
            for _ in range(max(1, model.instances)):
                env.process(queue.instance_loop())


class _ModelQueue:
    def __init__(
        self, env: simpy.Environment, clock: FakeClock, model: SimModel, device: SimDevice, stats: _Stats
    ) -> None:
        self.env, self.clock, self.model, self.device, self.stats = env, clock, model, device, stats
        self.policy = BatchingPolicy(
            preferred_batch_sizes=model.preferred_batch_sizes, max_queue_delay_us=model.max_queue_delay_us
        )
        self.queue: PendingQueue[simpy.Event] = PendingQueue.from_policy(self.policy)
        self.arrived = env.event()

    def submit(self) -> simpy.Event:
        done = self.env.event()
        self.queue.push(PendingItem(self._now_ns(), 1, 0, 1, done))
        self.arrived.succeed()
        self.arrived = self.env.event()
        return done

    def _now_ns(self) -> int:
        self.clock.set(max(self.clock.now_ns(), round(self.env.now * NS_PER_S)))
        return self.clock.now_ns()

    def instance_loop(self) -> Generator[simpy.Event, Any, None]:
        while True:
            decision = decide_batch(self.queue, self._now_ns(), self.policy, self.model.max_batch_size)
            for item in decision.rejected:
                self.stats.rejected += 1
                item.payload.fail(RuntimeError("queue timeout"))
            action = decision.action
            if isinstance(action, Batch):
                busy = self.model.service_s(action.rows)
                yield from self.device.run(busy)
                self.stats.record_batch(self.device, self.model.name, action.rows, busy)
                for item in action.items:
                    item.payload.succeed()
            elif isinstance(action, Wait):
                wait_s = max(0.0, action.until_ns / NS_PER_S - self.env.now)
                yield self.env.timeout(wait_s) | self.arrived
            else:
                yield self.arrived


class _Stats:
    def __init__(self, warmup_s: float, env: simpy.Environment) -> None:
        self.env = env
        self.warmup_s = warmup_s
        self.rejected = 0
        self.busy_s: dict[int, float] = {}
        self.batches: dict[str, list[int]] = {}

    def record_batch(self, device: SimDevice, model: str, rows: int, busy_s: float) -> None:
        if self.env.now - busy_s >= self.warmup_s:
            self.record_work(device, busy_s)
            self.batches.setdefault(model, []).append(rows)

    def record_work(self, device: SimDevice, busy_s: float) -> None:
        if self.env.now - busy_s >= self.warmup_s:
            self.busy_s[id(device)] = self.busy_s.get(id(device), 0.0) + busy_s


def simulate(pods: tuple[SimPod, ...], pipelines: list[Pipeline], options: SimOptions) -> SimResult:
    closed = options.arrivals.kind == "closed"
    if (options.requests_per_s <= 0 and not closed) or options.duration_s <= options.warmup_s:
        raise InvalidArgumentError("simulation needs a positive rate and a duration longer than its warm-up")
    if closed and options.arrivals.clients < 1:
        raise InvalidArgumentError(f"a closed loop needs at least one client, got {options.arrivals.clients}")
    env = simpy.Environment()
    clock = FakeClock()
    rng = np.random.default_rng(options.seed)
    stats = _Stats(options.warmup_s, env)
    homes: dict[str, list[tuple[str, float]]] = {}
    for pod in pods:
        for model in pod.models:
            homes.setdefault(model.name, []).append((pod.name, model.share))
    fleets = {
        pod.name: [
            _Replica(env, clock, pod.models, stats, pod.capacity, pod.shared, pod.name)
            for _ in range(pod.replicas)
        ]
        for pod in pods
    }
    latencies: dict[str, list[float]] = {p.name: [] for p in pipelines}
    completed = [0]  # requests finished after the warm-up, whenever they arrived
    for pipeline in pipelines:
        missing = [s.model for s in pipeline.steps if s.model not in homes]
        if missing:
            raise InvalidArgumentError(f"pipeline '{pipeline.name}' calls {missing[0]}, which no pod serves")

    def replica_for(model: str, entry: _Replica | None) -> _Replica:
        """A replica of a pod kind serving `model`, kinds drawn by their share of its calls; the
        request's entry replica when that kind is drawn (a pipeline runs in one process there)."""
        if entry is not None and model in entry.queues:
            return entry  # a pipeline runs in the one process it entered
        kinds = homes[model]
        if len(kinds) == 1:
            kind = kinds[0][0]
        else:
            weights = np.array([w for _, w in kinds])
            kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))][0]
        fleet = fleets[kind]
        return fleet[int(rng.integers(len(fleet)))]

    def run_request(pipeline: Pipeline, replica: _Replica) -> Generator[simpy.Event, Any, None]:
        start = env.now
        if pipeline.overhead_ms > 0:
            overhead_s = pipeline.overhead_ms / 1000.0
            if isinstance(replica.device, SharedCores):
                yield from replica.device.run(overhead_s)
                stats.record_work(replica.device, overhead_s)
            else:
                yield env.timeout(overhead_s)
        finished: list[simpy.Event] = []
        for step in pipeline.steps:
            target = replica_for(step.model, replica)
            hop_s = 0.0 if target is replica else options.hop_ms / 1000.0
            finished.append(
                env.process(_run_step(env, target, step.model, [finished[i] for i in step.after], hop_s))
            )
        yield env.all_of(finished)
        if start >= options.warmup_s:
            latencies[pipeline.name].append((env.now - start) * 1000.0)
        if env.now >= options.warmup_s:
            completed[0] += 1

    shares = np.array([p.share for p in pipelines])
    shares = shares / shares.sum()

    def next_request() -> simpy.Process:
        pipeline = pipelines[int(rng.choice(len(pipelines), p=shares))]
        return env.process(run_request(pipeline, replica_for(pipeline.steps[0].model, None)))

    def generate() -> Generator[simpy.Event, Any, None]:
        for gap in _gaps(options, rng):
            yield env.timeout(gap)
            next_request()

    def client() -> Generator[simpy.Event, Any, None]:
        while True:
            yield next_request()

    if closed:
        for _ in range(options.arrivals.clients):
            env.process(client())
    else:
        env.process(generate())
    if options.on_progress is None:
        env.run(until=options.duration_s)
    else:
        chunks = 50
        for index in range(1, chunks + 1):
            env.run(until=options.duration_s * index / chunks)
            options.on_progress(index / chunks)
    measured_s = options.duration_s - options.warmup_s
    utilisation = {
        pod.name: sum(stats.busy_s.get(id(r.device), 0.0) for r in fleets[pod.name])
        / (measured_s * pod.replicas * (pod.capacity if pod.shared else max(1, round(pod.capacity))))
        for pod in pods
    }
    return SimResult(
        latencies_ms={k: np.array(v) for k, v in latencies.items()},
        utilisation=utilisation,
        mean_batch={m: float(np.mean(v)) for m, v in stats.batches.items()},
        rejected=stats.rejected,
        completed_per_s=completed[0] / measured_s,
    )


def _run_step(
    env: simpy.Environment, replica: _Replica, model: str, after: list[simpy.Event], hop_s: float = 0.0
) -> Generator[simpy.Event, Any, None]:
    if after:
        yield env.all_of(after)
    if hop_s > 0:  # the call goes to another pod and comes back
        yield env.timeout(hop_s)
    yield replica.queues[model].submit()


def _gaps(options: SimOptions, rng: np.random.Generator) -> Generator[float, None, None]:
    """Inter-arrival times until the end of the run."""
    rate = options.requests_per_s
    arrivals = options.arrivals
    if arrivals.kind == "poisson":
        elapsed = 0.0
        while elapsed < options.duration_s:
            gap = float(rng.exponential(1.0 / rate))
            elapsed += gap
            yield gap
        return
    if arrivals.kind != "mmpp":
        raise InvalidArgumentError(f"arrival process '{arrivals.kind}' is unknown (expected poisson or mmpp)")
    high_fraction = arrivals.high_s / (arrivals.high_s + arrivals.low_s)
    high_rate = rate * arrivals.burst
    low_rate = (rate - high_fraction * high_rate) / (1 - high_fraction)
    if low_rate < 0:
        raise InvalidArgumentError(
            f"burst {arrivals.burst:g} is too high for a high state {high_fraction:.0%} of the time "
            f"(at most {1 / high_fraction:g})"
        )
    elapsed, since_event = 0.0, 0.0
    high = False
    state_end = float(rng.exponential(arrivals.low_s))
    while elapsed < options.duration_s:
        current = high_rate if high else low_rate
        gap = float(rng.exponential(1.0 / current)) if current > 0 else math.inf
        if elapsed + gap >= state_end:  # memoryless: restart the draw in the next state
            since_event += state_end - elapsed
            elapsed = state_end
            high = not high
            state_end = elapsed + float(rng.exponential(arrivals.high_s if high else arrivals.low_s))
            continue
        elapsed += gap
        yield since_event + gap
        since_event = 0.0
