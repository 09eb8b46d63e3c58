"""Parsers of single image-model parameter values (one string each), shared by the decode-mode and
crop_boxes-mode parameter modules. Every error is a ConfigError naming the model, the parameter,
what was expected and what was found."""

from __future__ import annotations

from fractions import Fraction

from packserve.errors import ConfigError


def bad_value(model: str, key: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"image model '{model}': parameter '{key}' must be {expected}, got {got!r}")


def parse_choice(model: str, key: str, value: str, allowed: tuple[str, ...]) -> str:
    normalized = value.strip().lower()
    for option in allowed:
        if option.lower() == normalized:
            return option
    raise bad_value(model, key, "one of " + "/".join(allowed), value)


def parse_int(model: str, key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise bad_value(model, key, "an integer", value) from None
    if not low <= number <= high:
        raise bad_value(model, key, f"an integer in [{low}, {high}]", value)
    return number


def parse_bool(model: str, key: str, value: str) -> bool:
    normalized = value.strip().lower()
    if normalized in ("1", "true", "yes", "on"):
        return True
    if normalized in ("0", "false", "no", "off"):
        return False
    raise bad_value(model, key, "true or false", value)


def parse_number(model: str, key: str, text: str) -> float:
    try:
        return float(Fraction(text.strip()))  # accepts "0.5", "1/255", "2e-3"
    except (ValueError, ZeroDivisionError):
        raise bad_value(model, key, "a number such as 0.5 or 1/255", text) from None


def parse_triple(model: str, key: str, value: str, positive: bool) -> tuple[float, float, float]:
    numbers = [parse_number(model, key, part) for part in value.split(",")]
    if len(numbers) == 1:
        numbers *= 3
    if len(numbers) != 3:
        raise bad_value(model, key, "1 or 3 comma-separated numbers", value)
    if positive and any(n <= 0 for n in numbers):
        raise bad_value(model, key, "positive numbers", value)
    return numbers[0], numbers[1], numbers[2]
