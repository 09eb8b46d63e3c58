"""tritonserver's flags that are not plain numbers or paths: parsing and their checks.

Triton's boolean flags take a value (`--allow-http=false`, `--strict-readiness true`); typer's
booleans are bare switches, so these options are strings read by `parse_bool`. `--log-verbose`
takes an integer in Triton and was a bare switch here: `normalize_argv` keeps the bare form
working by reading it as level 1. docs/triton-flags.md lists every tritonserver flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import typer

from packserve.cli.log_setup import LOG_FORMATS, LogSettings
from packserve.core.gpu_load_limit import GpuLoadLimits, parse_limit
from packserve.core.response_cache import parse_cache_config
from packserve.frontends import header_forward
from packserve.metrics.summaries import DEFAULT_QUANTILES, parse_quantiles

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(value: str, flag: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise typer.BadParameter(f"'{value}' is not a boolean (true/false, 1/0, yes/no, on/off)", param_hint=flag)


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """A bare `--log-verbose` (no integer after it) means `--log-verbose=1`."""
    result: list[str] = []
    for index, token in enumerate(argv):
        if token == "--log-verbose":
            following = argv[index + 1] if index + 1 < len(argv) else ""
            if not following.lstrip("-").isdigit():
                result.append("--log-verbose=1")
                continue
        result.append(token)
    return result


def model_repositories(paths: Sequence[Path]) -> tuple[Path, ...]:
    """The repositories to serve, resolved, each checked; a path given twice counts once."""
    if not paths:
        raise typer.BadParameter("at least one is needed", param_hint="--model-repository")
    seen: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise typer.BadParameter(f"'{path}' is not a directory", param_hint="--model-repository")
        resolved = path.resolve()
        if resolved not in seen:
            seen.append(resolved)
    return tuple(seen)


def auto_complete_enabled(disable_auto_complete: bool, strict_model_config: str | None) -> bool:
    """--disable-auto-complete-config, or the deprecated --strict-model-config=<bool>."""
    if disable_auto_complete:
        return False
    if strict_model_config is not None:
        return not parse_bool(strict_model_config, "--strict-model-config")
    return True


def check_config_name(name: str) -> str:
    if any(character.isspace() for character in name) or "/" in name:
        raise typer.BadParameter(
            f"'{name}' must not contain spaces or '/' (it names configs/<name>.pbtxt)",
            param_hint="--model-config-name",
        )
    return name


@dataclass(frozen=True)
class Listeners:
    http: bool = True
    grpc: bool = True
    metrics: bool = True
    cpu_metrics: bool = True
    gpu_metrics: bool = True
    metrics_interval_ms: float = 2000.0


def listeners(
    allow_http: str, allow_grpc: str, allow_metrics: str, allow_cpu: str, allow_gpu: str, interval_ms: float
) -> Listeners:
    chosen = Listeners(
        http=parse_bool(allow_http, "--allow-http"),
        grpc=parse_bool(allow_grpc, "--allow-grpc"),
        metrics=parse_bool(allow_metrics, "--allow-metrics"),
        cpu_metrics=parse_bool(allow_cpu, "--allow-cpu-metrics"),
        gpu_metrics=parse_bool(allow_gpu, "--allow-gpu-metrics"),
        metrics_interval_ms=interval_ms,
    )
    if interval_ms <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--metrics-interval-ms")
    if not (chosen.http or chosen.grpc):
        # A server nobody can reach for inference is a mistake, not a configuration.
        raise typer.BadParameter(
            "--allow-http and --allow-grpc cannot both be false", param_hint="--allow-grpc"
        )
    return chosen


def log_settings(
    verbose: int, log_file: Path | None, log_format: str, info: str, warning: str, error: str
) -> LogSettings:
    if verbose < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--log-verbose")
    if log_format not in LOG_FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_FORMATS)}", param_hint="--log-format")
    return LogSettings(
        verbose=verbose,
        file=log_file,
        format=log_format,
        info=parse_bool(info, "--log-info"),
        warning=parse_bool(warning, "--log-warning"),
        error=parse_bool(error, "--log-error"),
    )


def header_forwarding(http_pattern: str, grpc_pattern: str) -> None:
    """--http-header-forward-pattern / --grpc-header-forward-pattern (frontends/header_forward.py)."""
    try:
        header_forward.configure(http_pattern, grpc_pattern)
    except ValueError as exc:
        flag = str(exc).split(":", 1)[0]
        raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=flag) from None


def summary_quantiles(configs: Sequence[str]) -> tuple[float, ...]:
    """--metrics-config summary_latencies=<bool> and summary_quantiles=<q>:<error>,...; the
    quantiles to report, or () when summaries are off (the default, as in Triton)."""
    enabled, quantiles = False, DEFAULT_QUANTILES
    for config in configs:
        key, equals, value = config.partition("=")
        if not equals:
            raise typer.BadParameter(f"'{config}' is not <setting>=<value>", param_hint="--metrics-config")
        if key == "summary_latencies":
            enabled = parse_bool(value, "--metrics-config summary_latencies")
        elif key == "summary_quantiles":
            try:
                quantiles = parse_quantiles(value)
            except ValueError as exc:
                raise typer.BadParameter(f"summary_quantiles: {exc}", param_hint="--metrics-config") from None
        else:
            raise typer.BadParameter(
                f"'{key}' is not supported (summary_latencies and summary_quantiles are)",
                param_hint="--metrics-config",
            )
    return quantiles if enabled else ()


NO_RATE_LIMITER = (
    "packserve has no rate limiter (instance_group rate_limiter is refused at load too): an instance "
    "runs whenever a batch is ready; --cpu-execution-slots bounds how many batches compute on the CPU at once"
)


def check_rate_limit(mode: str, resources: Sequence[str]) -> None:
    """Triton's --rate-limit: 'off' (its default) is what packserve does; the rest is refused."""
    if mode != "off":
        raise typer.BadParameter(f"'{mode}': only 'off'. {NO_RATE_LIMITER}", param_hint="--rate-limit")
    if resources:
        raise typer.BadParameter(NO_RATE_LIMITER, param_hint="--rate-limit-resource")


def response_cache_bytes(cache_config: str | None, byte_size: int | None) -> int:
    """`--cache-config local,size=N`, or Triton's deprecated `--response-cache-byte-size N`."""
    if cache_config is not None and byte_size is not None:
        raise typer.BadParameter(
            "give the cache size once: --cache-config local,size=N "
            "(--response-cache-byte-size is its old form)",
            param_hint="--response-cache-byte-size",
        )
    if byte_size is not None:
        return byte_size
    try:
        return parse_cache_config(cache_config) if cache_config else 0
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cache-config") from None


def gpu_load_limits(specs: Sequence[str]) -> GpuLoadLimits:
    """Triton's repeatable `--model-load-gpu-limit <device id>:<fraction>`."""
    fractions: dict[int, float] = {}
    for text in specs:
        try:
            device_id, fraction = parse_limit(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model-load-gpu-limit") from None
        fractions[device_id] = fraction
    return GpuLoadLimits(fractions)
