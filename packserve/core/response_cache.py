"""Triton's local response cache (`--cache-config local,size=N`, model config
`response_cache { enable: true }`).

A response is kept under a hash of the model name, version, every input (name, datatype, shape,
bytes) and the outputs asked for (names and classification counts, so a request asking for other
outputs never gets a stored answer that lacks them). Least recently used entries go first when the
size would pass N bytes; a response bigger than N is not stored. Requests with tensors that are not
numpy arrays (GPU tensors) are neither looked up nor stored.
Threading: event-loop thread only.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from packserve.messages import InferRequest, Tensor

_LOCAL = re.compile(r"^local,size=(\d+)$")


def parse_cache_config(text: str) -> int:
    """Triton's `--cache-config local,size=N` -> N bytes; ValueError naming the problem."""
    match = _LOCAL.match(text.strip().replace(" ", ""))
    if match is None:
        raise ValueError(
            f"--cache-config '{text}': packserve supports only 'local,size=BYTES' (Triton's local cache)"
        )
    return int(match.group(1))


@dataclass
class CacheCounters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class ResponseCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self.counters = CacheCounters()
        self._entries: OrderedDict[bytes, tuple[dict[str, Tensor], int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(request: InferRequest, version: str) -> bytes | None:
        digest = hashlib.blake2b(digest_size=32)
        digest.update(f"{request.model_name}\0{version}\0".encode())
        for name in sorted(request.inputs):
            tensor = request.inputs[name]
            if type(tensor) is not np.ndarray:
                return None
            digest.update(f"{name}\0{tensor.dtype.str}\0{tensor.shape}\0".encode())
            if tensor.dtype == np.object_:
                for element in tensor.reshape(-1):
                    raw = element if isinstance(element, bytes) else str(element).encode()
                    digest.update(struct.pack("<I", len(raw)))
                    digest.update(raw)
            else:
                digest.update(np.ascontiguousarray(tensor).data)
        if request.outputs is None:
            digest.update(b"\0all outputs")
        else:
            for wanted in request.outputs:
                digest.update(f"\0out:{wanted.name}:{wanted.class_count}".encode())
        return digest.digest()

    def get(self, key: bytes) -> dict[str, Tensor] | None:
        entry = self._entries.get(key)
        if entry is None:
            self.counters.misses += 1
            return None
        self._entries.move_to_end(key)
        self.counters.hits += 1
        return dict(entry[0])

    def put(self, key: bytes, outputs: dict[str, Tensor]) -> None:
        if any(type(t) is not np.ndarray for t in outputs.values()):
            return
        # A private copy: the caller's arrays may be views of buffers reused elsewhere.
        stored = {name: np.array(tensor, copy=True) for name, tensor in outputs.items()}
        size = sum(_nbytes(t) for t in stored.values())
        if size > self.capacity_bytes or key in self._entries:
            return
        while self.used_bytes + size > self.capacity_bytes and self._entries:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.used_bytes -= evicted
            self.counters.evictions += 1
        self._entries[key] = (stored, size)
        self.used_bytes += size


def _nbytes(array: Any) -> int:
    if array.dtype == np.object_:
        elements = array.reshape(-1)
        return sum(len(e) if isinstance(e, bytes) else len(str(e)) for e in elements) + 8 * array.size
    return int(array.nbytes)
