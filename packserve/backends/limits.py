"""Per-model execution limits read from config `parameters` (string values, as Triton passes them):

    parameters { key: "isolation" value { string_value: "process" } }         # python models only
    parameters { key: "execution_timeout_s" value { string_value: "10" } }    # "0" = no deadline
    parameters { key: "max_rss_mb" value { string_value: "512" } }            # isolated models only

A python model's execute gets a deadline of DEFAULT_PYTHON_TIMEOUT_S unless its config says
otherwise: user Python code is what hangs. ONNX Runtime and torch models get none unless set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from packserve.errors import ConfigError
from packserve.model_spec import ModelSpec

ISOLATION_KEY = "isolation"
TIMEOUT_KEY = "execution_timeout_s"
RSS_KEY = "max_rss_mb"
IN_PROCESS, PROCESS = "none", "process"
_ISOLATION_VALUES = {"": IN_PROCESS, "none": IN_PROCESS, "thread": IN_PROCESS, "process": PROCESS}
DEFAULT_PYTHON_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class ExecutionLimits:
    isolation: str = IN_PROCESS
    execution_timeout_s: float = 0.0  # 0: no execution deadline
    max_rss_bytes: int = 0  # 0: no memory budget (isolated models only)

    @property
    def isolated(self) -> bool:
        return self.isolation == PROCESS


def execution_limits(spec: ModelSpec) -> ExecutionLimits:
    """The limits of a model; ConfigError naming the parameter when a value is invalid."""
    params = spec.parameters
    raw_isolation = params.get(ISOLATION_KEY, "").strip().lower()
    isolation = _ISOLATION_VALUES.get(raw_isolation)
    if isolation is None:
        raise ConfigError(
            f"model '{spec.name}': parameter '{ISOLATION_KEY}' is '{raw_isolation}'; "
            "expected 'process' or 'none'"
        )
    if isolation == PROCESS and spec.backend != "python":
        raise ConfigError(
            f"model '{spec.name}': parameter '{ISOLATION_KEY}: process' applies to python models only "
            f"(backend is '{spec.backend}')"
        )
    default_timeout = DEFAULT_PYTHON_TIMEOUT_S if spec.backend == "python" else 0.0
    timeout = _number(spec, TIMEOUT_KEY, default_timeout)
    rss_mb = _number(spec, RSS_KEY, 0.0)
    if rss_mb and isolation != PROCESS:
        raise ConfigError(
            f"model '{spec.name}': parameter '{RSS_KEY}' needs '{ISOLATION_KEY}: process' "
            "(only a model in its own process can be measured and stopped alone)"
        )
    return ExecutionLimits(isolation, timeout, int(rss_mb * 1024 * 1024))


def _number(spec: ModelSpec, key: str, default: float) -> float:
    text = spec.parameters.get(key)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"model '{spec.name}': parameter '{key}' must be a number >= 0, got '{text}'")
    return value
