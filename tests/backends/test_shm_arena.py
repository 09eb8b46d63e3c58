"""The shared-memory arenas that carry tensors to and from isolated python-model workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packserve.backends.python.shm_arena import ReadArena, WriteArena, remove_arena_files, remove_stale_arenas

ARRAYS = [
    np.array([True, False]),
    np.arange(6, dtype=np.float16).reshape(2, 3),
    np.arange(4, dtype=np.uint64),
    np.arange(4, dtype=np.int8),
    np.arange(12, dtype=np.float32).reshape(3, 4)[:, 1],  # not contiguous
    np.zeros((0, 3), np.float32),
    np.array([b"a", b"", "\u00e9".encode()], dtype=np.object_),
    np.arange(100_000, dtype=np.float64),  # larger than the small-copy path
]


@pytest.mark.parametrize("copy", [True, False])
def test_every_dtype_round_trips(tmp_path: Path, copy: bool) -> None:
    writer, reader = WriteArena(str(tmp_path / "arena")), ReadArena()
    path, slots = writer.write((f"t{i}", a) for i, a in enumerate(ARRAYS))
    got = reader.read(path, slots, copy=copy)
    assert [name for name, _ in got] == [f"t{i}" for i in range(len(ARRAYS))]
    for (_, value), expected in zip(got, ARRAYS, strict=True):
        assert value.dtype == expected.dtype and value.shape == expected.shape
        np.testing.assert_array_equal(value, expected)
    reader.close()
    writer.close()


def test_a_bigger_batch_moves_to_a_bigger_file_and_files_are_removed(tmp_path: Path) -> None:
    prefix = str(tmp_path / "arena")
    writer, reader = WriteArena(prefix), ReadArena()
    small_path, _ = writer.write([("x", np.ones(4, np.float32))])
    big = np.arange(3 << 20, dtype=np.uint8)  # 3 MiB: past the 1 MiB first arena
    big_path, slots = writer.write([("x", big)])
    assert big_path != small_path and not Path(small_path).exists()
    np.testing.assert_array_equal(reader.read(big_path, slots, copy=True)[0][1], big)
    reader.close()
    remove_arena_files(prefix)
    assert not list(tmp_path.glob("arena-*"))


def test_stale_arenas_of_dead_servers_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"packserve-{dead_pid}-0-in-0"
    alive = tmp_path / f"packserve-{os.getpid()}-0-in-0"
    for path in (stale, alive):
        path.write_bytes(b"x")
    assert remove_stale_arenas(str(tmp_path)) == 1
    assert not stale.exists() and alive.exists()
