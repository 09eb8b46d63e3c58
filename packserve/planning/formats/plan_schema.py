"""The plan file: pod types, replicas and per-model settings, with the model-config patch it implies.

Frozen dataclasses with explicit to/from JSON; `packserve deploy k8s` reads what `packserve plan`
wrote. The config patch uses Triton's JSON field names so it can be merged into a config.pbtxt or
sent as a load-API config override.

Written by hand rather than as pydantic models (pydantic comes with typer): the file carries
derived keys (`comparison`, the config patches), a pod's `models` come last, older files lack
fields the constructor requires, and validating on construction would turn the planner's integer
figures into floats in the file; pydantic would need a serializer or validator for each of those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packserve.errors import InvalidArgumentError


@dataclass(frozen=True, slots=True)
class ModelPlan:
    name: str
    batch_size: int  # max_batch_size and preferred batch size
    instances: int
    max_queue_delay_us: int
    rate_per_s: float  # calls per second per pod at peak
    batch_latency_ms: float
    occupancy_ms: float
    memory_bytes: int
    budget_ms: float  # this stage's share of the pipeline SLO
    predicted_p99_ms: float
    utilisation: float
    batching: bool = True  # False for max_batch_size 0 models: only the instance count changes
    tunable: bool = True  # False for models the core runs (region_map): nothing to set in config
    # Fraction of the model's calls this pod kind takes: below 1 when the model also runs on
    # dedicated pods (per-model replication); requests are split between the kinds in proportion.
    share: float = 1.0

    def config_patch(self, device_kind: str) -> dict[str, Any]:
        """Fields to set in the model's config (Triton JSON names)."""
        if not self.tunable:
            return {}
        if not self.batching:
            return {"instance_group": [{"count": self.instances, "kind": device_kind}]}
        return {
            "max_batch_size": self.batch_size,
            "instance_group": [{"count": self.instances, "kind": device_kind}],
            "dynamic_batching": {
                "preferred_batch_size": [self.batch_size],
                "max_queue_delay_microseconds": self.max_queue_delay_us,
            },
        }

    def config_pbtxt(self, device_kind: str) -> str:
        if not self.tunable:
            return ""
        if not self.batching:
            return f"instance_group [ {{ count: {self.instances} kind: {device_kind} }} ]\n"
        return (
            f"max_batch_size: {self.batch_size}\n"
            f"instance_group [ {{ count: {self.instances} kind: {device_kind} }} ]\n"
            "dynamic_batching {\n"
            f"  preferred_batch_size: [ {self.batch_size} ]\n"
            f"  max_queue_delay_microseconds: {self.max_queue_delay_us}\n"
            "}\n"
        )


@dataclass(frozen=True, slots=True)
class PodPlan:
    name: str
    models: tuple[ModelPlan, ...]
    replicas: int
    duty_cycle_ms: float
    utilisation: float  # predicted busy fraction of the device at peak
    memory_bytes: int
    capacity: float = 1.0  # batches the device runs at once: 1 on a GPU, cores on a CPU pod
    # Saturation throughput of one pod in its pipelines' mix, from the profile (requests/s).
    max_requests_per_s: float = 0.0
    cost_ms_per_request: float = 0.0  # device time (CPU time on a CPU pod) one mean request costs
    # Models the pod loads besides `models`: its pipelines' ensembles and the models per-region
    # steps call (their cost is counted in the step that calls them).
    also_loads: tuple[str, ...] = ()
    # GPU pods: the node's host cores counted on, their predicted busy fraction at peak, and which
    # resource sets the replica count ("device", "host CPU" or "latency target").
    host_cores: float = 0.0
    host_utilisation: float = 0.0
    binding: str = ""

    def load_models(self) -> tuple[str, ...]:
        """Every model the pod's server must load."""
        return tuple(sorted({m.name for m in self.models} | set(self.also_loads)))

    @property
    def predicted_p99_ms(self) -> float:
        return max(m.predicted_p99_ms for m in self.models)



def gpus(pods: tuple[PodPlan, ...]) -> int:
    """Devices a set of pods takes at peak: the sum of their replicas."""
    return sum(p.replicas for p in pods)

@dataclass(frozen=True, slots=True)
class Plan:
    profile_device: str
    requests_per_s: float
    peak_factor: float
    p99_ms: float
    memory_bytes: int
    memory_reserve: float
    mix: dict[str, float]
    pods: tuple[PodPlan, ...]
    baseline: tuple[PodPlan, ...]  # one model per device, for comparison
    pipeline_p99_ms: dict[str, float]
    max_utilisation: float = 0.8  # the device busy fraction the plan allowed at peak
    # CPU profiles: pipeline CPU per request measured end to end over its models' CPU measured alone.
    cpu_scale: float = 0.0
    device: str = ""  # the profiled device: "cpu" or "cuda:N" ("" in plans written before it existed)
    # Per pipeline: device time serving adds to each request beyond its models' work (measured by
    # serving it over HTTP; see `device_model.serving_overhead_ms`). Charged in every pod figure.
    pipeline_overhead_ms: dict[str, float] = field(default_factory=dict)
    layout: str = "packed"  # how `pods` was laid out (planner.LAYOUTS)
    # Fewest devices any plan could use: total work at peak over one device's capacity, rounded up.
    lower_bound: int = 0
    work_devices: float = 0.0  # that total work, in devices (not rounded)
    # The utilisation the baseline's own search settled on, and the two fleets' simulated worst p99.
    baseline_max_utilisation: float = 0.0
    simulated_p99_ms: dict[str, float] = field(default_factory=dict)  # "packed"/"baseline" -> ms
    # When the packed plan is more than 10% above the bound: the p99 target at which the planner's
    # rule would come within 10% (closed form, same utilisation); None when not computed or none.
    p99_within_bound_ms: float | None = None

    @property
    def device_kind(self) -> str:
        if self.device:
            return "KIND_CPU" if self.device == "cpu" else "KIND_GPU"
        return "KIND_CPU" if self.profile_device.lower().startswith("cpu") else "KIND_GPU"

    def config_patches(self) -> dict[str, dict[str, Any]]:
        """model -> config fields. A model on several pod kinds (dedicated and mixed pods) gets the
        settings of its dedicated pods here; each pod kind's own are in `pod_config_patches`."""
        patches: dict[str, dict[str, Any]] = {}
        for pod in sorted(self.pods, key=lambda p: not p.name.endswith("-dedicated")):
            for m in pod.models:
                if m.tunable:
                    patches.setdefault(m.name, m.config_patch(self.device_kind))
        return patches

    def pod_config_patches(self, pod: PodPlan) -> dict[str, dict[str, Any]]:
        return {m.name: m.config_patch(self.device_kind) for m in pod.models if m.tunable}

    def within_bound_devices(self) -> int:
        """The most devices that count as within 10% of the lower bound."""
        return max(self.lower_bound, int(self.lower_bound * 1.1 + 1e-9))

    def comparison(self) -> dict[str, dict[str, float]]:
        """Lower bound, packed plan and one-model-per-pod baseline in devices, each over the bound."""
        bound = max(1, self.lower_bound)
        rows = {"lower_bound": self.lower_bound, "packed": gpus(self.pods)}
        if self.baseline:
            rows["baseline"] = gpus(self.baseline)
        return {name: {"devices": float(n), "ratio_to_bound": n / bound} for name, n in rows.items()}

    def pod_of(self, model: str) -> PodPlan:
        for pod in self.pods:
            if any(m.name == model for m in pod.models):
                return pod
        raise InvalidArgumentError(f"model '{model}' is not in the plan")

    def to_json(self) -> dict[str, Any]:
        return {
            "profile_device": self.profile_device,
            "requests_per_s": self.requests_per_s,
            "peak_factor": self.peak_factor,
            "p99_ms": self.p99_ms,
            "memory_bytes": self.memory_bytes,
            "memory_reserve": self.memory_reserve,
            "mix": dict(self.mix),
            "pods": [_pod_json(p) for p in self.pods],
            "baseline": [_pod_json(p) for p in self.baseline],
            "pipeline_p99_ms": dict(self.pipeline_p99_ms),
            "max_utilisation": self.max_utilisation,
            "cpu_scale": self.cpu_scale,
            "device": self.device,
            "pipeline_overhead_ms": dict(self.pipeline_overhead_ms),
            "layout": self.layout,
            "lower_bound": self.lower_bound,
            "work_devices": self.work_devices,
            "baseline_max_utilisation": self.baseline_max_utilisation,
            "simulated_p99_ms": dict(self.simulated_p99_ms),
            "p99_within_bound_ms": self.p99_within_bound_ms,
            "comparison": self.comparison(),
            "config_patches": self.config_patches(),
            "pod_config_patches": {p.name: self.pod_config_patches(p) for p in self.pods},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(
            profile_device=str(data["profile_device"]),
            requests_per_s=float(data["requests_per_s"]),
            peak_factor=float(data["peak_factor"]),
            p99_ms=float(data["p99_ms"]),
            memory_bytes=int(data["memory_bytes"]),
            memory_reserve=float(data.get("memory_reserve", 0.0)),
            mix={str(k): float(v) for k, v in data.get("mix", {}).items()},
            pods=tuple(_pod_from(p) for p in data["pods"]),
            baseline=tuple(_pod_from(p) for p in data.get("baseline", ())),
            pipeline_p99_ms={str(k): float(v) for k, v in data.get("pipeline_p99_ms", {}).items()},
            max_utilisation=float(data.get("max_utilisation", 0.8)),
            cpu_scale=float(data.get("cpu_scale", 0.0)),
            device=str(data.get("device", "")),
            pipeline_overhead_ms={str(k): float(v) for k, v in data.get("pipeline_overhead_ms", {}).items()},
            layout=str(data.get("layout", "packed")),
            lower_bound=int(data.get("lower_bound", 0)),
            work_devices=float(data.get("work_devices", 0.0)),
            baseline_max_utilisation=float(data.get("baseline_max_utilisation", 0.0)),
            simulated_p99_ms={str(k): float(v) for k, v in data.get("simulated_p99_ms", {}).items()},
            p99_within_bound_ms=(
                None if data.get("p99_within_bound_ms") is None else float(data["p99_within_bound_ms"])
            ),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Plan:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise InvalidArgumentError(f"plan file '{path}' does not exist") from exc
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"plan file '{path}' is malformed: {exc!r}") from exc


def _pod_json(pod: PodPlan) -> dict[str, Any]:
    return {
        "name": pod.name,
        "replicas": pod.replicas,
        "duty_cycle_ms": pod.duty_cycle_ms,
        "utilisation": pod.utilisation,
        "memory_bytes": pod.memory_bytes,
        "capacity": pod.capacity,
        "max_requests_per_s": pod.max_requests_per_s,
        "cost_ms_per_request": pod.cost_ms_per_request,
        "also_loads": list(pod.also_loads),
        "host_cores": pod.host_cores,
        "host_utilisation": pod.host_utilisation,
        "binding": pod.binding,
        "models": [
            {
                "name": m.name,
                "batch_size": m.batch_size,
                "instances": m.instances,
                "max_queue_delay_us": m.max_queue_delay_us,
                "rate_per_s": m.rate_per_s,
                "batch_latency_ms": m.batch_latency_ms,
                "occupancy_ms": m.occupancy_ms,
                "memory_bytes": m.memory_bytes,
                "budget_ms": m.budget_ms,
                "predicted_p99_ms": m.predicted_p99_ms,
                "utilisation": m.utilisation,
                "batching": m.batching,
                "tunable": m.tunable,
                "share": m.share,
            }
            for m in pod.models
        ],
    }


def _pod_from(data: dict[str, Any]) -> PodPlan:
    models = tuple(
        ModelPlan(
            name=str(m["name"]),
            batch_size=int(m["batch_size"]),
            instances=int(m["instances"]),
            max_queue_delay_us=int(m["max_queue_delay_us"]),
            rate_per_s=float(m["rate_per_s"]),
            batch_latency_ms=float(m["batch_latency_ms"]),
            occupancy_ms=float(m["occupancy_ms"]),
            memory_bytes=int(m["memory_bytes"]),
            budget_ms=float(m["budget_ms"]),
            predicted_p99_ms=float(m["predicted_p99_ms"]),
            utilisation=float(m["utilisation"]),
            batching=bool(m.get("batching", True)),
            tunable=bool(m.get("tunable", True)),
            share=float(m.get("share", 1.0)),
        )
        for m in data["models"]
    )
    return PodPlan(
        name=str(data["name"]),
        models=models,
        replicas=int(data["replicas"]),
        duty_cycle_ms=float(data["duty_cycle_ms"]),
        utilisation=float(data["utilisation"]),
        memory_bytes=int(data["memory_bytes"]),
        capacity=float(data.get("capacity", 1.0)),
        max_requests_per_s=float(data.get("max_requests_per_s", 0.0)),
        cost_ms_per_request=float(data.get("cost_ms_per_request", 0.0)),
        also_loads=tuple(str(n) for n in data.get("also_loads", ())),
        host_cores=float(data.get("host_cores", 0.0)),
        host_utilisation=float(data.get("host_utilisation", 0.0)),
        binding=str(data.get("binding", "")),
    )
