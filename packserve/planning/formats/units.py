"""Parsing of the human quantities the planning commands take: loads, durations, memory sizes.

Each parser raises `InvalidArgumentError` whose message shows the accepted forms, so the CLI can
hand it to the user unchanged.
"""

from __future__ import annotations

import math
import re

from packserve.errors import InvalidArgumentError

_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "b": 1e9, "B": 1e9}
_PERIOD_S = {
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "m": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_LOAD = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGbB]?)\s*/\s*([a-z]+)\s*$")
_DURATION_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "min": 60000.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|min)\s*$")
_MEMORY = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_MEM = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_load(text: str) -> float:
    """'25M/day', '300/s', '1.5k/min' -> requests per second."""
    match = _LOAD.match(text)
    if not match or match.group(3) not in _PERIOD_S:
        raise InvalidArgumentError(
            f"load '{text}' is not understood; write COUNT/PERIOD such as 25M/day, 300/s or 2k/min "
            f"(periods: s, min, h, day)"
        )
    rate = float(match.group(1)) * _SCALE[match.group(2)] / _PERIOD_S[match.group(3)]
    if not math.isfinite(rate):
        raise InvalidArgumentError(f"load '{text}' is not a finite number of requests")
    if rate <= 0:
        raise InvalidArgumentError(f"load '{text}' must be more than zero requests")
    return rate


def parse_duration_ms(text: str) -> float:
    """'100ms', '0.2s', '500us' -> milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidArgumentError(f"duration '{text}' is not understood; write e.g. 100ms, 0.25s or 800us")
    value = float(match.group(1)) * _DURATION_MS[match.group(2)]
    if not math.isfinite(value):
        raise InvalidArgumentError(f"duration '{text}' is not a finite number")
    if value <= 0:
        raise InvalidArgumentError(f"duration '{text}' must be more than zero")
    return value


def parse_memory_bytes(text: str) -> int:
    """'16GiB', '16GB', '512MiB', '1000000' -> bytes."""
    match = _MEM.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _MEMORY:
        raise InvalidArgumentError(
            f"memory size '{text}' is not understood; write e.g. 16GiB, 32GB or 512MiB"
        )
    amount = float(match.group(1)) * _MEMORY[unit]
    if not math.isfinite(amount):
        raise InvalidArgumentError(f"memory size '{text}' is not a finite number")
    value = int(amount)
    if value <= 0:
        raise InvalidArgumentError(f"memory size '{text}' must be more than zero")
    return value


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """'1,2,4,8' -> (1, 2, 4, 8); every value must be a positive integer."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) <= 0:
            raise InvalidArgumentError(f"{what} '{text}' must be a comma-separated list of positive integers")
        values.append(int(part))
    if not values:
        raise InvalidArgumentError(f"{what} '{text}' is empty")
    return tuple(sorted(set(values)))


def parse_mix(entries: list[str]) -> dict[str, float]:
    """['detect=0.7', 'classify=0.3'] -> shares normalised to sum to 1."""
    shares: dict[str, float] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or not name.strip() or share <= 0:
            raise InvalidArgumentError(f"--mix '{entry}' must be PIPELINE=SHARE with a share above zero")
        shares[name.strip()] = shares.get(name.strip(), 0.0) + share
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()}


def format_bytes(value: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"
