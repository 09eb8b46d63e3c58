"""The closed control plane (issue 10): the repository API only in explicit mode, restrictable
with Triton's flags; names and config paths that reach outside a model's folder refused before any
file of it is read or run; failed loads of unknown names leave nothing behind."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.e2e.e2e_server import LiveServer, direct_http_session
from tests.reliability.hostile import build_hostile_repository, connect, read_until_closed, status_of

EVIL_MODEL = """
from pathlib import Path
Path(__file__).with_name("ran").write_text("outside code ran")

class TritonPythonModel:
    def execute(self, requests):
        return []
"""
EVIL_CONFIG = {
    "name": "victim",
    "backend": "python",
    "max_batch_size": 0,
    "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [1]}],
    "output": [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [1]}],
}
RESTRICTION = "model-repository,statistics:admin-key=s3cret"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A repository, and beside it (outside it) a python 'model' that records when it runs."""
    base = tmp_path_factory.mktemp("control-plane")
    repository = build_hostile_repository(base / "repo")
    evil = base / "outside" / "evil"
    (evil / "1").mkdir(parents=True)
    (evil / "1" / "model.py").write_text(EVIL_MODEL)
    (evil / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n')
    # A model whose version folder is a symlink out of the repository.
    escape = repository / "escape"
    escape.mkdir()
    (escape / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n')
    os.symlink(evil / "1", escape / "1")
    return repository, evil


@pytest.fixture(scope="module")
def explicit(reliability_servers: Callable[..., LiveServer], layout: tuple[Path, Path]) -> LiveServer:
    return reliability_servers(
        layout[0],
        control_mode="explicit",
        load_models=["simple"],
        extra_args=["--http-restricted-api", RESTRICTION, "--grpc-restricted-protocol", RESTRICTION],
    )


HTTP_KEY = {"admin-key": "s3cret"}
GRPC_KEY = {"triton-grpc-protocol-admin-key": "s3cret"}


def _grpc_error(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


def test_restricted_api_needs_its_header(explicit: LiveServer) -> None:
    http = direct_http_session()
    refused = http.post(f"{explicit.http_base}/v2/repository/index", timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"] == "This API is restricted, expecting header 'admin-key'"
    assert http.get(f"{explicit.http_base}/v2/models/stats", timeout=30).status_code == 403
    assert http.post(f"{explicit.http_base}/v2/repository/index", headers=HTTP_KEY, timeout=30).ok
    assert http.get(f"{explicit.http_base}/v2/models/simple/ready", timeout=30).ok  # health: open
    client = grpcclient.InferenceServerClient(explicit.grpc_url)
    error = _grpc_error(lambda: client.get_model_repository_index())
    assert error.status() == str(grpc.StatusCode.UNAVAILABLE)
    assert "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'" in str(error)
    assert client.get_model_repository_index(headers=GRPC_KEY) is not None
    assert client.is_server_live()


@pytest.mark.parametrize("name", ["../outside/evil", "..", "/etc", "a/b", "x\x00y"])
def test_names_that_are_paths_are_refused(explicit: LiveServer, layout: tuple[Path, Path], name: str) -> None:
    client = grpcclient.InferenceServerClient(explicit.grpc_url)
    error = _grpc_error(lambda: client.load_model(name, headers=GRPC_KEY))
    assert error.status() in (str(grpc.StatusCode.INVALID_ARGUMENT), str(grpc.StatusCode.NOT_FOUND)), error
    assert not (layout[1] / "1" / "ran").exists(), "a python file outside the repository ran"


def test_absolute_name_to_outside_model_does_not_run_it(
    explicit: LiveServer, layout: tuple[Path, Path]
) -> None:
    client = grpcclient.InferenceServerClient(explicit.grpc_url)
    error = _grpc_error(lambda: client.load_model(str(layout[1]), headers=GRPC_KEY))
    assert error.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert not (layout[1] / "1" / "ran").exists()


@pytest.mark.parametrize(
    "field,value",
    [
        ("default_model_filename", "ABSOLUTE"),
        ("default_model_filename", "../../../outside/evil/1/model.py"),
    ],
)
def test_config_override_paths_stay_in_the_model_folder(
    explicit: LiveServer, layout: tuple[Path, Path], field: str, value: str
) -> None:
    evil_file = layout[1] / "1" / "model.py"
    config = {**EVIL_CONFIG, "name": "slow", field: str(evil_file) if value == "ABSOLUTE" else value}
    client = grpcclient.InferenceServerClient(explicit.grpc_url)
    error = _grpc_error(lambda: client.load_model("slow", config=json.dumps(config), headers=GRPC_KEY))
    assert "outside" in str(error) or "absolute" in str(error) or "'..'" in str(error), error
    assert not (layout[1] / "1" / "ran").exists()


def test_symlink_escape_is_refused(explicit: LiveServer, layout: tuple[Path, Path]) -> None:
    response = direct_http_session().post(
        f"{explicit.http_base}/v2/repository/models/escape/load", headers=HTTP_KEY, timeout=60
    )
    assert response.status_code >= 400
    assert "outside the model folder" in response.json()["error"]
    assert not (layout[1] / "1" / "ran").exists()


def test_unknown_loads_leave_no_index_entries(explicit: LiveServer) -> None:
    http = direct_http_session()
    index_url = f"{explicit.http_base}/v2/repository/index"
    before = http.post(index_url, headers=HTTP_KEY, timeout=30).json()
    for i in range(1_000):  # the probe sent 3,000; 1,000 shows the same and keeps CI short
        answer = http.post(
            f"{explicit.http_base}/v2/repository/models/nope{i}/load", headers=HTTP_KEY, timeout=30
        )
        assert answer.status_code in (400, 404), answer.text
    client = grpcclient.InferenceServerClient(explicit.grpc_url)
    for i in range(100):
        _grpc_error(lambda i=i: client.load_model(f"grpc_nope{i}", config="{}", headers=GRPC_KEY))
    after = http.post(index_url, headers=HTTP_KEY, timeout=30).json()
    assert len(after) == len(before), [row["name"] for row in after if row not in before][:10]


def test_long_names_are_invalid_arguments(explicit: LiveServer) -> None:
    client = grpcclient.InferenceServerClient(explicit.grpc_url)
    long_name = "a" * 10_000
    error = _grpc_error(lambda: client.load_model(long_name, headers=GRPC_KEY))
    assert error.status() == str(grpc.StatusCode.INVALID_ARGUMENT) and "255" in str(error)
    error = _grpc_error(lambda: client.get_model_metadata(long_name))
    assert error.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    # Over HTTP a 10,000-character name is past the request-line limit: 414, connection closed.
    with connect(explicit.http_port) as sock:
        sock.sendall(f"GET /v2/models/{long_name}/ready HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status_of(read_until_closed(sock)) == 414
    answer = direct_http_session().get(f"{explicit.http_base}/v2/models/{'b' * 300}", timeout=30)
    assert answer.status_code == 400 and "255" in answer.json()["error"]


def test_repository_api_is_closed_outside_explicit_mode(
    reliability_servers: Callable[..., LiveServer], hostile_repository: Path
) -> None:
    server = reliability_servers(hostile_repository)
    http = direct_http_session()
    for action in ("load", "unload"):
        answer = http.post(f"{server.http_base}/v2/repository/models/simple/{action}", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["error"] == "explicit model load / unload is not allowed if polling is enabled"
    client = grpcclient.InferenceServerClient(server.grpc_url)
    error = _grpc_error(lambda: client.unload_model("simple"))
    assert error.status() == str(grpc.StatusCode.UNAVAILABLE)
    assert client.is_model_ready("simple")
