"""Size and shape limits the HTTP front end enforces before it allocates anything."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on one HTTP request. Past a byte or element bound the answer is 413; past a
    structural bound (inputs, JSON depth) it is 400."""

    max_body_bytes: int = 64 * MIB  # on the wire, compressed or not
    max_inflated_bytes: int = 256 * MIB  # after gzip/deflate decoding
    max_elements_per_tensor: int = 64 * MIB  # product(shape) of one input
    max_inputs_per_request: int = 64
    max_json_depth: int = 32  # nesting of objects/arrays in the JSON header

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_inflated_bytes",
            "max_elements_per_tensor",
            "max_inputs_per_request",
            "max_json_depth",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"HttpLimits.{name} must be positive, got {getattr(self, name)}")
