"""Triton's local response cache (`--cache-config local,size=N`, model config
`response_cache { enable: true }`).

A response is kept under a hash of the model name, version, every input (name, datatype, shape,
bytes) and the outputs asked for (names and classification counts, so a request asking for other
outputs never gets a stored answer that lacks them). Least recently used entries go first when the
size would pass N bytes; a response bigger than N is not stored. Requests with tensors that are not
numpy arrays (GPU tensors) are neither looked up nor stored. `CachedResponses` is the cache as
the engine's infer path uses it, with the times and events Triton reports for it.
Threading: event-loop thread only.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from packserve.core.clock import Clock
from packserve.messages import InferRequest, InferResponse, RequestTiming, Tensor

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


class CacheEvents(Protocol):
    """Who hears about hits and misses (the engine's observers: statistics and Prometheus)."""

    def cache_hit(self, model: str, version: str, timing: RequestTiming) -> None: ...

    def cache_miss(self, model: str, version: str, lookup_ns: int) -> None: ...


class CachedResponses:
    """The response cache on the infer path. A hit is a successful request that never queued: the
    statistics count it as Triton does (success and cache_hit, no inference or execution). A
    miss's time is the lookup and the insertion, as in Triton."""

    def __init__(self, cache: ResponseCache, clock: Clock, events: CacheEvents) -> None:
        self.cache = cache
        self._clock = clock
        self._events = events

    def lookup(
        self, model: str, version: str, request: InferRequest
    ) -> tuple[bytes | None, InferResponse | None]:
        """(the request's key, its cached response or None); the key is None for a request that
        cannot be cached. Sets the request's `timing.cache_ns` (and `completed_ns` on a hit)."""
        key = self.cache.key(request, version)
        timing = request.timing
        started = self._clock.now_ns()
        outputs = self.cache.get(key) if key is not None else None
        timing.cache_ns = self._clock.now_ns() - started
        if outputs is None:
            return key, None
        timing.completed_ns = self._clock.now_ns()
        self._events.cache_hit(model, version, timing)
        return key, InferResponse(model, version, request.id, outputs)

    def store(
        self, model: str, version: str, key: bytes, outputs: dict[str, Tensor], lookup_ns: int
    ) -> None:
        """After a miss: keep the response; report the miss with the time it cost in all."""
        started = self._clock.now_ns()
        self.cache.put(key, outputs)
        self._events.cache_miss(model, version, lookup_ns + self._clock.now_ns() - started)
