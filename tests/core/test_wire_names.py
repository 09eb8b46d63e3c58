"""Protocol words as enums (packserve.types.WireName): every answer stays byte-identical to the
bare strings the enums replaced."""

from __future__ import annotations

import json

import orjson
from tritonclient.grpc import service_pb2

from packserve.core.views import IndexEntry, ModelState
from packserve.model_spec import InstanceKind


def test_a_state_is_its_word_in_every_form_a_client_sees() -> None:
    state = ModelState.UNAVAILABLE
    assert state == "UNAVAILABLE" and hash(state) == hash("UNAVAILABLE")
    assert str(state) == f"{state}" == f"{state}" == "UNAVAILABLE"
    assert f"{state}: unloaded" == "UNAVAILABLE: unloaded"
    assert f"{state:>12}" == f"{'UNAVAILABLE':>12}"
    assert json.dumps({"state": state}) == json.dumps({"state": "UNAVAILABLE"})
    assert orjson.dumps({"state": state}) == orjson.dumps({"state": "UNAVAILABLE"})
    entry = IndexEntry("m", "1", ModelState.READY, "")
    wire = service_pb2.RepositoryIndexResponse.ModelIndex(
        name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
    )
    bare = service_pb2.RepositoryIndexResponse.ModelIndex(name="m", version="1", state="READY", reason="")
    assert wire.SerializeToString() == bare.SerializeToString()


def test_an_instance_kind_is_triton_s_name() -> None:
    assert [kind.value for kind in InstanceKind] == ["KIND_CPU", "KIND_GPU", "KIND_MODEL"]
    assert InstanceKind("KIND_GPU") is InstanceKind.GPU
    assert InstanceKind.CPU == "KIND_CPU" and f"{InstanceKind.CPU}" == "KIND_CPU"
