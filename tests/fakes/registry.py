"""Backends registered by name for one test: the global registry is restored when the test ends."""

from __future__ import annotations

import pytest

from packserve.backends import registry
from packserve.backends.base import BackendModel


class BackendRegistry:
    """What the `backend_registry` fixture gives a test. Every change goes through `monkeypatch`,
    so the names a test adds (or replaces) are gone, or back as they were, after it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch

    def add(self, name: str, cls: type[BackendModel]) -> None:
        """`name` resolves to `cls` (already loaded: no import happens)."""
        self._monkeypatch.setitem(registry.BACKENDS, name, f"{cls.__module__}:{cls.__qualname__}")
        self._monkeypatch.setitem(registry._loaded, name, cls)

    def add_target(self, name: str, target: str) -> None:
        """`name` resolves to "module:Class", imported on first use (e.g. one that does not exist)."""
        self._monkeypatch.setitem(registry.BACKENDS, name, target)
        self._monkeypatch.delitem(registry._loaded, name, raising=False)
