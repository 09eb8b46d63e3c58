"""The shared-memory registry on its own: bounds, names, links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from packserve.core.shared_memory import SharedMemoryRegistry, check_no_overlap
from packserve.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError


@pytest.fixture
def registry(tmp_path: Path) -> SharedMemoryRegistry:
    (tmp_path / "region").write_bytes(bytes(range(64)))
    os.symlink("/etc/hostname", tmp_path / "link")
    (tmp_path / "folder").mkdir()
    return SharedMemoryRegistry(root=tmp_path)


def test_read_write_within_the_registered_part(registry: SharedMemoryRegistry, tmp_path: Path) -> None:
    registry.register("r", "/region", 16, 32)
    assert registry.read("r", 0, 4) == bytes([16, 17, 18, 19])
    registry.write("r", 28, 4, b"\xff" * 4, "output 'Y'")
    assert (tmp_path / "region").read_bytes()[44:48] == b"\xff" * 4
    with pytest.raises(InvalidArgumentError, match="Invalid offset \\+ byte size"):
        registry.read("r", 30, 4)  # 2 bytes past the registered part, though inside the file
    with pytest.raises(InvalidArgumentError, match="should be at least 8 bytes"):
        registry.write("r", 0, 4, b"\x00" * 8, "output 'Y'")
    with pytest.raises(AlreadyExistsError):
        registry.register("r", "/region", 0, 8)
    registry.unregister("r")
    with pytest.raises(NotFoundError):
        registry.read("r", 0, 1)


@pytest.mark.parametrize(
    ("key", "offset", "size", "message"),
    [
        ("/link", 0, 4, "Unable to open"),
        ("/folder", 0, 4, "Unable to open"),
        ("/../region", 0, 4, "not a valid key"),
        ("/region", 60, 8, "beyond its 64 bytes"),
        ("/region", 0, 0, "must be >= 0 and > 0"),
    ],
)
def test_bad_registrations(
    registry: SharedMemoryRegistry, key: str, offset: int, size: int, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        registry.register("bad", key, offset, size)
    assert registry.status() == []


def test_overlapping_outputs() -> None:
    check_no_overlap([("A", "r", 0, 8), ("B", "r", 8, 8), ("C", "s", 0, 8)])
    with pytest.raises(InvalidArgumentError, match="'A' and 'B' overlap"):
        check_no_overlap([("A", "r", 0, 8), ("B", "r", 4, 8)])
