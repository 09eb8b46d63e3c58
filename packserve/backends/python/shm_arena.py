"""Tensors between the server and an isolated python-model worker, through shared memory.

Each direction has one writer-owned arena: a file in /dev/shm (a tmpfs, so pages are shared RAM)
mapped by both processes. The writer copies every tensor into it at 64-byte aligned offsets and
sends only a small description (name, dtype, shape, offset) over the control pipe; the reader maps
the same file and views the bytes as numpy arrays. No array is ever pickled. An arena that is too
small is replaced by a bigger file, whose path travels with the next description.

Files are named `<prefix>-<n>`; the server removes every file of an instance's prefix when that
instance closes or its worker restarts, so a worker that dies mid-write leaks nothing.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import mmap
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from packserve.backends.python.pb_utils import deserialize_bytes_tensor, serialize_byte_tensor

_ALIGN = 64
_MIN_SIZE = 1 << 20
_SMALL = 1 << 16  # below this a tensor is copied by slice assignment rather than numpy
BYTES_DTYPE = "BYTES"  # marks a BYTES tensor, serialized Triton-style (length-prefixed elements)


def shm_dir() -> str:
    """/dev/shm where it exists (Linux), otherwise the temp folder (still a file mapping)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


# Where one tensor lies in an arena, sent over the pipe instead of the data: (name, dtype, shape,
# offset, nbytes), dtype being a numpy dtype string ('<f4', '|b1') or BYTES_DTYPE. A plain tuple:
# it pickles several times faster than a dataclass, and it crosses the pipe twice per tensor.
TensorSlot = tuple[str, str, tuple[int, ...], int, int]


def remove_stale_arenas(directory: str) -> int:
    """Remove arena files left by servers that died without cleaning up (SIGKILL, OOM kill):
    `packserve-<pid>-...` whose pid no longer runs. Returns how many were removed."""
    removed = 0
    for path in glob.glob(os.path.join(directory, "packserve-*-*")):
        pid_text = os.path.basename(path).split("-")[1]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, not ours to judge
        return True
    return True


def remove_arena_files(prefix: str) -> None:
    for path in glob.glob(f"{prefix}-*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


class WriteArena:
    """The writer's side: one growing shared file that tensors are copied into."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._counter = itertools.count()
        self.path = ""
        self._map: mmap.mmap | None = None
        self._size = 0

    def write(self, tensors: Iterable[tuple[str, Any]]) -> tuple[str, list[TensorSlot]]:
        """Copy the tensors in (replacing the previous contents); return the arena path and slots."""
        prepared: list[tuple[str, str, tuple[int, ...], Any, int]] = []
        total = 0
        for name, value in tensors:
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
            if array.dtype == np.object_ or array.dtype.kind == "S":
                payload = serialize_byte_tensor(array) or b""
                prepared.append((name, BYTES_DTYPE, array.shape, payload, len(payload)))
                total += _aligned(len(payload))
            else:
                prepared.append((name, array.dtype.str, array.shape, array, array.nbytes))
                total += _aligned(array.nbytes)
        buffer = self._ensure(total)
        slots: list[TensorSlot] = []
        offset = 0
        for name, dtype, shape, data, nbytes in prepared:
            if dtype == BYTES_DTYPE:
                buffer[offset : offset + nbytes] = data
            elif nbytes <= _SMALL and data.flags.c_contiguous:
                # Slice assignment is the cheapest copy for small tensors; a dtype whose buffer
                # format memoryview cannot cast falls back to numpy.
                try:
                    buffer[offset : offset + nbytes] = memoryview(data).cast("B")
                except (TypeError, ValueError):
                    _copy_into(buffer, offset, data)
            elif nbytes:
                _copy_into(buffer, offset, data)
            slots.append((name, dtype, tuple(int(d) for d in shape), offset, nbytes))
            offset += _aligned(nbytes)
        return self.path, slots

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = ""

    def _ensure(self, size: int) -> mmap.mmap:
        if self._map is not None and size <= self._size:
            return self._map
        new_size = max(_MIN_SIZE, self._size * 2, _aligned(size))
        self.close()  # the reader keeps its own mapping of the old file until it sees the new path
        path = f"{self._prefix}-{next(self._counter)}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, new_size)
            self._map = mmap.mmap(fd, new_size)
        finally:
            os.close(fd)
        self.path, self._size = path, new_size
        return self._map


class ReadArena:
    """The reader's side: maps whichever arena file the writer names, reads tensors out of it."""

    def __init__(self) -> None:
        self._path = ""
        self._map: mmap.mmap | None = None

    def read(self, path: str, slots: Sequence[TensorSlot], copy: bool) -> list[tuple[str, np.ndarray]]:
        """The tensors of `slots`: views into shared memory (valid until the writer's next write)
        or, with `copy`, private arrays. BYTES tensors are always decoded into new arrays."""
        buffer = self._attach(path)
        tensors: list[tuple[str, np.ndarray]] = []
        for name, dtype_text, shape, offset, nbytes in slots:
            if dtype_text == BYTES_DTYPE:
                raw = bytes(buffer[offset : offset + nbytes])
                array = deserialize_bytes_tensor(raw).reshape(shape)
            else:
                dtype = np.dtype(dtype_text)
                if nbytes == 0:
                    array = np.empty(shape, dtype=dtype)
                else:
                    array = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset)
                    if copy:
                        array = array.copy()
            tensors.append((name, array))
        return tensors

    def close(self) -> None:
        if self._map is not None:
            # A view still alive somewhere keeps it mapped: the GC unmaps it later.
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        self._path = ""

    def _attach(self, path: str) -> mmap.mmap:
        if self._map is None or path != self._path:
            self.close()
            fd = os.open(path, os.O_RDWR)
            try:
                self._map = mmap.mmap(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            self._path = path
        return self._map


def _copy_into(buffer: mmap.mmap, offset: int, data: np.ndarray) -> None:
    target: np.ndarray = np.ndarray(data.shape, dtype=data.dtype, buffer=buffer, offset=offset)
    np.copyto(target, data, casting="no")


def _aligned(nbytes: int) -> int:
    return (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
