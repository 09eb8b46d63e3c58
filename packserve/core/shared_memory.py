"""System shared memory regions (Triton's shared-memory extension), registered by clients.

A client creates a POSIX shared-memory object (`/dev/shm/<key>`), registers part of it under a
name (key, offset, byte size), then sends inputs in it and asks for outputs to be written into it
by (region name, offset, byte size). Every access is bounds-checked against the registered part:
an unknown region, a range outside it or a region too small for an output is a client error,
never a read or write outside the region. Inputs are copied out when the request is decoded, so
unregistering a region (or the client rewriting it) cannot touch a request already in flight.
Threading: event-loop thread only.
"""

from __future__ import annotations

import itertools
import mmap
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packserve.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError

SHM_ROOT = Path("/dev/shm")
# A POSIX shared-memory name: one leading slash at most, no other slash (so no path escapes).
_KEY = re.compile(r"^/?[^/\x00]{1,255}$")


@dataclass(frozen=True, slots=True)
class RegionStatus:
    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(frozen=True, slots=True)
class ShmPlace:
    """Where a request puts one tensor: a registered region, an offset in it, the bytes it may use."""

    region: str
    offset: int
    byte_size: int


@dataclass(slots=True)
class _Region:
    status: RegionStatus
    memory: mmap.mmap


class SharedMemoryRegistry:
    def __init__(self, root: Path = SHM_ROOT) -> None:
        self._root = root
        self._regions: dict[str, _Region] = {}

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not name:
            raise InvalidArgumentError("a shared memory region needs a name")
        if name in self._regions:
            raise AlreadyExistsError(f"shared memory region '{name}' already in manager")
        if not _KEY.match(key) or key.strip("/") in (".", ".."):
            raise InvalidArgumentError(f"Unable to open shared memory region: '{key}' (not a valid key)")
        if offset < 0 or byte_size <= 0:
            raise InvalidArgumentError(
                f"Invalid shared memory region: '{key}' (offset {offset} and byte_size {byte_size} "
                "must be >= 0 and > 0)"
            )
        try:
            # Never follow a link out of the shared-memory folder.
            fd = os.open(self._root / key.lstrip("/"), os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            raise InvalidArgumentError(
                f"Unable to open shared memory region: '{key}' ({exc.strerror})"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgumentError(f"Unable to open shared memory region: '{key}' (not a region)")
            size = info.st_size
            if offset + byte_size > size:
                raise InvalidArgumentError(
                    f"Invalid shared memory region: '{key}' (offset {offset} + byte_size {byte_size} "
                    f"is beyond its {size} bytes)"
                )
            memory = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._regions[name] = _Region(RegionStatus(name, key, offset, byte_size), memory)

    def unregister(self, name: str = "") -> None:
        """Unregister one region, or all when `name` is empty; an unknown name is no error."""
        names = [name] if name else list(self._regions)
        for each in names:
            region = self._regions.pop(each, None)
            if region is not None:
                region.memory.close()

    def status(self, name: str = "") -> list[RegionStatus]:
        if not name:
            return [region.status for region in self._regions.values()]
        region = self._regions.get(name)
        if region is None:
            raise NotFoundError(f"Unable to find system shared memory region: '{name}'")
        return [region.status]

    def read(self, name: str, offset: int, byte_size: int) -> bytes:
        """A copy of `byte_size` bytes at `offset` within the region."""
        region, start = self._range(name, offset, byte_size)
        return region.memory[start : start + byte_size]

    def write(self, name: str, offset: int, byte_size: int, data: Any, what: str) -> None:
        """Write `data` (a buffer) at `offset`; `byte_size` is the room the request gave it."""
        view = memoryview(data).cast("B")
        if view.nbytes > byte_size:
            raise InvalidArgumentError(
                f"shared memory size specified with the request for {what} ({byte_size} bytes) "
                f"should be at least {view.nbytes} bytes to hold the results"
            )
        region, start = self._range(name, offset, byte_size)
        region.memory[start : start + view.nbytes] = view

    def close(self) -> None:
        self.unregister()

    def _range(self, name: str, offset: int, byte_size: int) -> tuple[_Region, int]:
        region = self._regions.get(name)
        if region is None:
            raise NotFoundError(f"Unable to find shared memory region: '{name}'")
        status = region.status
        if offset < 0 or byte_size < 0 or offset + byte_size > status.byte_size:
            raise InvalidArgumentError(
                f"Invalid offset + byte size for shared memory region: '{name}' (offset {offset} + "
                f"byte_size {byte_size} is beyond its registered {status.byte_size} bytes)"
            )
        return region, status.offset + offset


def check_no_overlap(ranges: list[tuple[str, str, int, int]]) -> None:
    """Refuse outputs of one request that would be written over each other: (output, region,
    offset, byte_size) each."""
    ordered = sorted(ranges, key=lambda r: (r[1], r[2]))
    for (name_a, region_a, offset_a, size_a), (name_b, region_b, offset_b, _) in itertools.pairwise(ordered):
        if region_a == region_b and offset_b < offset_a + size_a:
            raise InvalidArgumentError(
                f"outputs '{name_a}' and '{name_b}' overlap in shared memory region '{region_a}'"
            )
