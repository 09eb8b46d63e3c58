"""Fixtures every test folder may use."""

from __future__ import annotations

import pytest

from tests.fakes.registry import BackendRegistry


@pytest.fixture
def backend_registry(monkeypatch: pytest.MonkeyPatch) -> BackendRegistry:
    """Register test backends by name; the global backend registry is restored after the test."""
    return BackendRegistry(monkeypatch)
