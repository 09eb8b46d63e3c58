from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from packserve.config import devices
from packserve.config.devices import _apply_visible_devices


@pytest.mark.parametrize(
    ("installed", "visible", "expected"),
    [
        (2, None, 2),
        (2, "", 0),
        (4, "1,3", 2),
        (2, "0,7,1", 1),  # CUDA stops at the first device it cannot use
        (2, "0,0", 1),
        (2, "GPU-1234abcd", 1),
        (0, "0", 0),
    ],
)
def test_cuda_visible_devices_narrows_the_driver_count(
    installed: int, visible: str | None, expected: int
) -> None:
    assert _apply_visible_devices(installed, visible) == expected


def test_driver_listing_counts_gpus_when_torch_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bus_id in ("0000:01:00.0", "0000:02:00.0"):
        (tmp_path / bus_id).mkdir()
    monkeypatch.setattr(devices, "_DRIVER_GPU_LISTING", tmp_path)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices._count_visible_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert devices._count_visible_gpus() == 1


def test_no_driver_means_no_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_DRIVER_GPU_LISTING", tmp_path / "absent")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert devices._count_visible_gpus() == 0


def test_an_imported_torch_is_asked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda = SimpleNamespace(is_available=lambda: True, device_count=lambda: 3)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=fake_cuda))
    monkeypatch.setattr(devices, "_DRIVER_GPU_LISTING", tmp_path / "absent")
    assert devices._count_visible_gpus() == 3
