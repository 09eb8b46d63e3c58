"""Trace settings (Triton's form and errors), sampling, and traces of an ensemble's steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from packserve.core.engine import Engine, EngineOptions
from packserve.core.tracing import TraceControl, TraceSettings
from packserve.errors import InvalidArgumentError, TraceSettingRefusedError
from packserve.examples.simple_repository import build_simple_repository
from packserve.messages import InferRequest

DEFAULTS = {
    "trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1", "log_frequency": "0",
    "trace_file": "", "trace_mode": "triton",
}  # fmt: skip


def test_defaults_are_tritons() -> None:
    assert TraceControl(TraceSettings()).settings().as_strings() == DEFAULTS


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"trace_rate": "abc"}, InvalidArgumentError, "Unable to parse 'trace_rate', got: abc"),
        ({"trace_count": "-5"}, InvalidArgumentError, "Expecting value >= -1, got:-5"),
        ({"trace_level": ["SOMETIMES"]}, InvalidArgumentError, "Unable to parse 'trace_level'"),
        ({"trace_level": "TIMESTAMPS"}, InvalidArgumentError, "array of strings"),
        ({"trace_rate": 5}, InvalidArgumentError, "must be a string"),
        ({"trace_file": "/tmp/x"}, TraceSettingRefusedError, "can not be updated through network protocol"),
        ({"nope": "1"}, InvalidArgumentError, "unknown trace setting 'nope'"),
        ({"trace_level": ["TIMESTAMPS"]}, InvalidArgumentError, "trace file name is not given"),
    ],
)
def test_bad_changes_are_refused(changes: dict[str, object], error: type[Exception], message: str) -> None:
    control = TraceControl(TraceSettings())
    with pytest.raises(error, match=message):
        control.update("", changes)
    assert control.settings().as_strings() == DEFAULTS  # nothing half-applied


def test_model_settings_override_and_null_returns_to_global() -> None:
    control = TraceControl(TraceSettings(file="/tmp/t.json"))
    control.update("m", {"trace_rate": "5", "trace_level": ["TIMESTAMPS"]})
    control.update("", {"trace_count": "7"})
    assert control.settings("m").as_strings()["trace_rate"] == "5"
    assert control.settings("m").as_strings()["trace_count"] == "7"  # follows the global value
    assert control.settings("other").level == ("OFF",)
    control.update("m", {"trace_rate": None})
    assert control.settings("m").as_strings()["trace_rate"] == "1000"
    with pytest.raises(InvalidArgumentError, match="sample rate must be non-zero"):
        control.update("m", {"trace_rate": "0"})


def test_rate_and_count() -> None:
    control = TraceControl(TraceSettings(level=("TIMESTAMPS",), rate=3, count=2, file="/tmp/t.json"))
    traced = []
    for index in range(12):
        record = control.begin("m")
        if record is not None:
            traced.append(index)
            control.end(record)
    assert traced == [0, 3]  # one in three, two in all
    assert control.settings().as_strings()["trace_count"] == "0"


def _ensemble_request() -> InferRequest:
    data = np.arange(16, dtype=np.int32).reshape(1, 16)
    return InferRequest(model_name="simple_ensemble", model_version="", inputs={"INPUT0": data, "INPUT1": data}, id="r7")


async def test_an_ensemble_traces_its_steps_into_the_file(tmp_path: Path) -> None:
    repository = build_simple_repository(tmp_path / "repo")
    trace_file = tmp_path / "trace.json"
    settings = TraceSettings(level=("TIMESTAMPS", "TENSORS"), rate=1, file=str(trace_file), log_frequency=2)
    engine = await Engine.start(EngineOptions(repository, trace=settings))
    try:
        for _ in range(3):
            await engine.infer(_ensemble_request())
        with pytest.raises(Exception, match="INPUT1"):
            await engine.infer(InferRequest(model_name="simple", model_version="", inputs={}, id=""))
    finally:
        await engine.shutdown(0)
    first = json.loads(Path(f"{trace_file}.0").read_text())  # log_frequency 2: two pipelines
    heads = [e for e in first if "model_name" in e]
    roots = [e for e in heads if "parent_id" not in e]
    assert [r["model_name"] for r in roots] == ["simple_ensemble", "simple_ensemble"]
    assert roots[0]["request_id"] == "r7"
    steps = [e for e in heads if e.get("parent_id") == roots[0]["id"]]
    assert len(steps) == 2 and {s["model_name"] for s in steps} == {"simple"}
    stamps = {e["id"]: [t["name"] for t in e["timestamps"]] for e in first if "timestamps" in e}
    assert stamps[steps[0]["id"]][:3] == ["REQUEST_START", "QUEUE_START", "COMPUTE_START"]
    assert stamps[steps[0]["id"]][-1] == "REQUEST_END"
    tensors = [e["tensor"] for e in first if e.get("activity") == "TENSOR_QUEUE_INPUT"]
    assert {"name": "INPUT0", "type": "int32[1, 16]"} in tensors
    rest = json.loads(Path(f"{trace_file}.1").read_text())  # the third pipeline and the failure
    assert any("error" in e for e in rest)
