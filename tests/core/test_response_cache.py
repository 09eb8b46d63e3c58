"""Triton's local response cache: hits skip execution and count as Triton counts them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packserve.core.engine import Engine, EngineOptions
from packserve.core.response_cache import ResponseCache, parse_cache_config
from packserve.messages import InferRequest, RequestedOutput
from tests.fakes.double_backend import MODELS, register_fake_backend, write_double_model
from tests.fakes.registry import BackendRegistry


@pytest.fixture(autouse=True)
def _fake_backend(backend_registry: BackendRegistry) -> None:
    register_fake_backend(backend_registry)
    MODELS.clear()


def x(value: float) -> np.ndarray:
    return np.full((1, 4), value, dtype=np.float32)


async def start(root: Path, cache_bytes: int) -> Engine:
    return await Engine.start(EngineOptions(model_repository=root, response_cache_bytes=cache_bytes))


def enable_cache(root: Path, name: str) -> None:
    config = root / name / "config.pbtxt"
    config.write_text(config.read_text() + "response_cache { enable: true }\n")


async def test_hits_skip_execution_and_count_as_triton(tmp_path: Path) -> None:
    write_double_model(tmp_path, "cached", delay_us=0)
    enable_cache(tmp_path, "cached")
    write_double_model(tmp_path, "plain", delay_us=0)
    engine = await start(tmp_path, 1 << 20)
    try:
        for value in (1.0, 1.0, 2.0, 1.0):
            response = await engine.infer(InferRequest("cached", {"X": x(value)}))
            np.testing.assert_array_equal(response.outputs["Y"], x(2 * value))
        stats = engine.model_statistics("cached")[0]
        # As Triton 2.51 answers for the same sequence: hits are successes, not inferences.
        assert (stats.inference_count, stats.execution_count) == (2, 2)
        assert stats.inference_stats.success.count == 4
        assert (stats.inference_stats.cache_hit.count, stats.inference_stats.cache_miss.count) == (2, 2)
        # A model without response_cache is never cached.
        for _ in range(2):
            await engine.infer(InferRequest("plain", {"X": x(1.0)}))
        assert engine.model_statistics("plain")[0].execution_count == 2
        # Asking for other outputs (here: a classification) is another entry, never a wrong answer.
        classified = await engine.infer(
            InferRequest("cached", {"X": x(1.0)}, outputs=[RequestedOutput("Y", class_count=1)])
        )
        assert classified.outputs["Y"].dtype == np.object_
        assert engine.model_statistics("cached")[0].execution_count == 3
    finally:
        await engine.shutdown()


async def test_without_a_server_cache_the_model_serves_uncached(tmp_path: Path, caplog) -> None:
    write_double_model(tmp_path, "cached", delay_us=0)
    enable_cache(tmp_path, "cached")
    engine = await start(tmp_path, 0)
    try:
        assert "its responses are not cached" in caplog.text
        for _ in range(2):
            await engine.infer(InferRequest("cached", {"X": x(1.0)}))
        assert engine.model_statistics("cached")[0].execution_count == 2
    finally:
        await engine.shutdown()


def test_least_recently_used_entries_go_first() -> None:
    cache = ResponseCache(capacity_bytes=40)
    keys = [
        ResponseCache.key(InferRequest("m", {"X": np.full(4, v, np.float32)}), "1") for v in range(3)
    ]
    assert all(key is not None for key in keys)
    for key in keys[:2]:
        cache.put(key, {"Y": np.zeros(4, np.float32)})  # 16 bytes each
    assert cache.get(keys[0]) is not None  # keys[0] is now the most recent
    cache.put(keys[2], {"Y": np.zeros(4, np.float32)})
    assert cache.get(keys[1]) is None and cache.get(keys[0]) is not None
    assert cache.counters.evictions == 1 and cache.used_bytes == 32
    cache.put(b"big", {"Y": np.zeros(100, np.float32)})  # bigger than the cache: not stored
    assert cache.get(b"big") is None


def test_keys_cover_inputs_version_and_outputs() -> None:
    base = InferRequest("m", {"X": np.arange(4, dtype=np.int32)})
    key = ResponseCache.key(base, "1")
    assert key == ResponseCache.key(InferRequest("m", {"X": np.arange(4, dtype=np.int32)}), "1")
    assert key != ResponseCache.key(base, "2")
    assert key != ResponseCache.key(InferRequest("m", {"X": np.arange(4, dtype=np.int64)}), "1")
    assert key != ResponseCache.key(InferRequest("m", {"X": np.arange(4, dtype=np.int32).reshape(2, 2)}), "1")
    assert key != ResponseCache.key(InferRequest("m", {"X": base.inputs["X"]}, outputs=[RequestedOutput("Y")]), "1")
    assert ResponseCache.key(InferRequest("m", {"X": [1, 2]}), "1") is None  # not a numpy array


@pytest.mark.parametrize(("text", "size"), [("local,size=1048576", 1 << 20), ("local, size=10", 10)])
def test_cache_config(text: str, size: int) -> None:
    assert parse_cache_config(text) == size


def test_other_caches_are_refused() -> None:
    with pytest.raises(ValueError, match="only 'local,size=BYTES'"):
        parse_cache_config("redis,host=localhost")
