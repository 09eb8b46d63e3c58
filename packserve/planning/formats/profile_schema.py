"""The profile file: what `packserve profile` measured and `packserve plan` reads.

Frozen dataclasses with explicit to/from JSON so the file format is the code, not an accident of
`asdict`. Times are milliseconds, memory bytes, rates per second. Bump `SCHEMA_VERSION` on any
incompatible change; `Profile.from_json` refuses versions it does not know.

Written by hand rather than as pydantic models (pydantic comes with typer): `from_json` gives
files written before a field existed defaults that the constructor does not have (concurrency,
queue and compute phases), the file's key order is not the fields' order, and the messages for a
malformed file are ours; pydantic would need a validator or serializer for each of those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packserve.errors import InvalidArgumentError

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ProfilePoint:
    """One closed-loop measurement of a model at a fixed request batch size and instance count."""

    batch_size: int
    instances: int
    concurrency: int  # requests kept in flight by the load generator
    throughput_per_s: float  # batch rows (images) completed per second
    latency_p50_ms: float  # end to end as the client saw it
    latency_p99_ms: float
    queue_ms: float  # mean, from the server's own statistics
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float
    memory_bytes: int  # resident memory of the model with this many instances loaded
    # CPU time the serving process spent per request of this batch size (all threads, user + system).
    # On a CPU device this, not wall time, is what models packed on the same cores compete for;
    # 0 when not measured (GPU profiles, older files).
    cpu_ms: float = 0.0

    @property
    def compute_ms(self) -> float:
        """Mean time one execution of this batch occupies an instance."""
        return self.compute_input_ms + self.compute_infer_ms + self.compute_output_ms

    @property
    def occupancy_ms(self) -> float:
        """Device time one batch of `batch_size` costs when instances overlap: b / throughput."""
        if self.throughput_per_s <= 0:
            return float("inf")
        return 1000.0 * self.batch_size / self.throughput_per_s

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "instances": self.instances,
            "concurrency": self.concurrency,
            "throughput_per_s": self.throughput_per_s,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "queue_ms": self.queue_ms,
            "compute_input_ms": self.compute_input_ms,
            "compute_infer_ms": self.compute_infer_ms,
            "compute_output_ms": self.compute_output_ms,
            "memory_bytes": self.memory_bytes,
            "cpu_ms": self.cpu_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfilePoint:
        return cls(
            batch_size=int(data["batch_size"]),
            instances=int(data["instances"]),
            concurrency=int(data.get("concurrency", 1)),
            throughput_per_s=float(data["throughput_per_s"]),
            latency_p50_ms=float(data["latency_p50_ms"]),
            latency_p99_ms=float(data["latency_p99_ms"]),
            queue_ms=float(data.get("queue_ms", 0.0)),
            compute_input_ms=float(data.get("compute_input_ms", 0.0)),
            compute_infer_ms=float(data["compute_infer_ms"]),
            compute_output_ms=float(data.get("compute_output_ms", 0.0)),
            memory_bytes=int(data["memory_bytes"]),
            cpu_ms=float(data.get("cpu_ms", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class ServedPoint:
    """A pipeline served through the real HTTP front end (closed loop, `concurrency` requests of
    batch size 1 in flight; on a CPU as many as cores, the condition the planner charges models'
    CPU at): the serving process's CPU time per request, all threads, client excluded. Against the sum of
    its models' CPU measured in-process, the difference is what serving adds per request: the
    front end, request decode / response encode, the ensemble's scheduling, the other threads."""

    requests: int
    concurrency: int
    cpu_ms: float
    client_cpu_ms: float  # CPU the load generator's threads spent, excluded from `cpu_ms`
    latency_p50_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "cpu_ms": self.cpu_ms,
            "client_cpu_ms": self.client_cpu_ms,
            "latency_p50_ms": self.latency_p50_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServedPoint:
        return cls(
            requests=int(data["requests"]),
            concurrency=int(data.get("concurrency", 1)),
            cpu_ms=float(data["cpu_ms"]),
            client_cpu_ms=float(data.get("client_cpu_ms", 0.0)),
            latency_p50_ms=float(data.get("latency_p50_ms", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class EnsembleStep:
    """One step of an ensemble: which model it calls and which ensemble tensors it reads/writes."""

    model: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "inputs": list(self.inputs), "outputs": list(self.outputs)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnsembleStep:
        return cls(str(data["model"]), tuple(data.get("inputs", ())), tuple(data.get("outputs", ())))


@dataclass(frozen=True, slots=True)
class ModelProfile:
    name: str
    platform: str
    backend: str
    max_batch_size: int
    points: tuple[ProfilePoint, ...]
    # Ensembles: the steps in config order; an ensemble's points are end to end. Per-region models
    # (platform region_map): steps naming their crop model and the model they run per region, whose
    # cost their own points already include - so neither is a pipeline of its own.
    steps: tuple[EnsembleStep, ...] = ()
    # Image pre-processing models: decode/resize/normalize cost per image at batch size 1.
    image_op_ms_per_image: float | None = None
    # Pipelines (ensembles) only: the same request served over HTTP; None when not measured.
    served: ServedPoint | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.platform == "ensemble"

    def point(self, batch_size: int, instances: int) -> ProfilePoint | None:
        for candidate in self.points:
            if candidate.batch_size == batch_size and candidate.instances == instances:
                return candidate
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "platform": self.platform,
            "backend": self.backend,
            "max_batch_size": self.max_batch_size,
            "points": [p.to_json() for p in self.points],
            "steps": [s.to_json() for s in self.steps],
            "image_op_ms_per_image": self.image_op_ms_per_image,
            "served": None if self.served is None else self.served.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelProfile:
        image_ms = data.get("image_op_ms_per_image")
        served = data.get("served")
        return cls(
            name=str(data["name"]),
            platform=str(data.get("platform", "")),
            backend=str(data.get("backend", "")),
            max_batch_size=int(data.get("max_batch_size", 0)),
            points=tuple(ProfilePoint.from_json(p) for p in data.get("points", ())),
            steps=tuple(EnsembleStep.from_json(s) for s in data.get("steps", ())),
            image_op_ms_per_image=None if image_ms is None else float(image_ms),
            served=None if served is None else ServedPoint.from_json(served),
        )


@dataclass(frozen=True, slots=True)
class Profile:
    device: str  # "cpu", "cuda:0"
    device_name: str  # "NVIDIA H200", CPU model name, or a stated assumption for synthetic profiles
    models: tuple[ModelProfile, ...]
    created: str = ""  # ISO 8601 time of the measurement
    notes: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self, name: str) -> ModelProfile:
        for candidate in self.models:
            if candidate.name == name:
                return candidate
        known = ", ".join(m.name for m in self.models)
        raise InvalidArgumentError(f"model '{name}' is not in the profile (profiled: {known})")

    @property
    def cpu_cores(self) -> int:
        """Cores of the profiled CPU machine (what one CPU pod offers); 0 for a GPU profile."""
        return int(self.extra.get("cpu_cores", 0)) if self.device == "cpu" else 0

    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "device": self.device,
            "device_name": self.device_name,
            "created": self.created,
            "notes": self.notes,
            "models": [m.to_json() for m in self.models],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        version = int(data.get("schema_version", SCHEMA_VERSION))
        if version != SCHEMA_VERSION:
            raise InvalidArgumentError(
                f"profile schema_version {version} is not supported (expected {SCHEMA_VERSION})"
            )
        return cls(
            device=str(data.get("device", "")),
            device_name=str(data.get("device_name", "")),
            models=tuple(ModelProfile.from_json(m) for m in data.get("models", ())),
            created=str(data.get("created", "")),
            notes=str(data.get("notes", "")),
            schema_version=version,
            extra=dict(data.get("extra", {})),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Profile:
        if path.is_dir():
            raise InvalidArgumentError(f"profile file '{path}' is a folder, not a profile JSON file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InvalidArgumentError(f"profile file '{path}' does not exist") from exc
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError(f"profile file '{path}' is not text (binary data?), not JSON") from exc
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"profile file '{path}' is not valid JSON: {exc}") from exc
        except OSError as exc:
            raise InvalidArgumentError(f"profile file '{path}' cannot be read: {exc.strerror}") from exc
        if not isinstance(data, dict):
            raise InvalidArgumentError(
                f"profile file '{path}' holds a JSON {type(data).__name__}, not the object "
                "`packserve profile` writes"
            )
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"profile file '{path}' is malformed: {exc!r}") from exc
