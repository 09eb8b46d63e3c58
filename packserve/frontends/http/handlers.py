"""One function per KServe v2 / Triton HTTP endpoint: engine view in, `Reply` out.

Runs on the event loop. Errors are `packserve.errors` types; `app.py` maps them to statuses.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from packserve.core.engine_api import EngineApi
from packserve.errors import InvalidArgumentError, NotFoundError, UnsupportedError
from packserve.frontends import header_forward
from packserve.frontends.http import json_views, raw_body
from packserve.frontends.http.infer_decode import InferDecoder
from packserve.frontends.http.infer_encode import encode_infer
from packserve.frontends.http.reply import OCTET_STREAM, Reply
from packserve.model_config_json import config_to_json

_EMPTY_OK = Reply(200)
_EMPTY_NOT_READY = Reply(400)
# Triton 2.51 explains a not-ready model in the body; server health answers stay empty.
_MODEL_NOT_READY = Reply(400, orjson.dumps({"error": "Model version not ready"}))


def _json(document: Any) -> Reply:
    return Reply(200, orjson.dumps(document))


def live(engine: EngineApi) -> Reply:
    return _EMPTY_OK if engine.is_live() else _EMPTY_NOT_READY


def ready(engine: EngineApi) -> Reply:
    return _EMPTY_OK if engine.is_ready() else _EMPTY_NOT_READY


def server_metadata(engine: EngineApi) -> Reply:
    return _json(json_views.server_metadata(engine.server_metadata()))


def model_metadata(engine: EngineApi, model: str, version: str) -> Reply:
    return _json(json_views.model_metadata(engine.model_metadata(model, version)))


def model_ready(engine: EngineApi, model: str, version: str) -> Reply:
    return _EMPTY_OK if engine.model_ready(model, version) else _MODEL_NOT_READY


def model_config(engine: EngineApi, model: str, version: str) -> Reply:
    # Triton's JSON form of the config (a wire format: it lives with the front ends, not the core).
    return _json(config_to_json(engine.model_config(model, version)))


def model_statistics(engine: EngineApi, model: str, version: str) -> Reply:
    try:
        stats = engine.model_statistics(model, version)
    except NotFoundError as exc:
        # Triton 2.51 answers statistics of an unknown model with 400, unlike its other endpoints.
        raise InvalidArgumentError(str(exc)) from None
    return _json(json_views.model_statistics(stats))


async def infer(
    engine: EngineApi,
    decoder: InferDecoder,
    model: str,
    version: str,
    body: bytes,
    header_length: bytes | None,
    forwarded: dict[str, str] | None = None,
) -> Reply:
    if header_length is not None and header_length.strip() == b"0":
        # Raw binary request: the body is the model's one input (Triton's documented form).
        metadata = engine.model_metadata(model, version)
        batching = engine.model_config(model, version).max_batch_size > 0
        inputs = [(t.name, t.datatype.wire_name, list(t.shape)) for t in metadata.inputs]
        header = raw_body.raw_binary_header(model, inputs, len(body), batching)
        body, header_length = header + body, str(len(header)).encode()
    decoded = decoder.decode(model, version, body, header_length, engine.shared_memory)
    if forwarded:  # --http-header-forward-pattern
        header_forward.merge(decoded.request.parameters, forwarded)
    response = await engine.infer(decoded.request)
    encoded = encode_infer(response, decoded, engine.shared_memory)
    if encoded.header_length is None:
        return Reply(200, encoded.body)
    return Reply(200, encoded.body, OCTET_STREAM, encoded.header_length)


def _optional_object(body: bytes, what: str) -> dict[str, Any]:
    """Repository request bodies are optional JSON objects."""
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgumentError(f"failed to parse the {what} request JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError(f"{what} request body must be a JSON object")
    return document


def _request_parameters(document: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidArgumentError(f"{what} 'parameters' must be a JSON object")
    return parameters


def repository_index(engine: EngineApi, body: bytes) -> Reply:
    document = _optional_object(body, "repository index")
    ready_only = document.get("ready", False)
    if not isinstance(ready_only, bool):
        raise InvalidArgumentError(f"repository index 'ready' must be a bool, got {ready_only!r}")
    return _json(json_views.repository_index(engine.repository_index(ready_only)))


async def load_model(engine: EngineApi, model: str, body: bytes) -> Reply:
    parameters = _request_parameters(_optional_object(body, "load"), "load")
    config = parameters.get("config")
    if config is not None and not isinstance(config, str):
        raise InvalidArgumentError(f"load of '{model}': parameter 'config' must be a JSON string")
    files: dict[str, bytes] = {}
    for key, value in parameters.items():
        if not key.startswith("file:"):
            continue
        if not isinstance(value, str):
            raise InvalidArgumentError(f"load of '{model}': '{key}' must be base64 text")
        try:
            files[key[len("file:") :]] = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise InvalidArgumentError(f"load of '{model}': '{key}' is not valid base64: {exc}") from None
    if files and config is None:
        # As Triton: files replace the model directory, so the config must come with them.
        raise InvalidArgumentError(f"load of '{model}': 'file:' parameters need a 'config' parameter")
    await engine.load_model(model, config, files or None)
    return _EMPTY_OK


async def unload_model(engine: EngineApi, model: str, body: bytes) -> Reply:
    parameters = _request_parameters(_optional_object(body, "unload"), "unload")
    dependents = parameters.get("unload_dependents", False)
    if not isinstance(dependents, bool):
        raise InvalidArgumentError(f"unload of '{model}': 'unload_dependents' must be a bool")
    await engine.unload_model(model, dependents)
    return _EMPTY_OK


def trace_setting(engine: EngineApi, method: str, model: str, body: bytes) -> Reply:
    """GET or POST /v2[/models/<model>]/trace/setting (Triton's trace extension)."""
    if method == "GET":
        return _json(engine.trace_setting(model))
    if method != "POST":
        raise InvalidArgumentError(f"trace setting: method {method} is not GET or POST")
    changes = _optional_object(body, "trace setting request")
    return _json(engine.update_trace_setting(model, changes))
# ---- system / CUDA shared memory (Triton's shared-memory extension) ------------------------------


def shm_status(engine: EngineApi, region: str) -> Reply:
    return _json(
        [
            {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for r in engine.shared_memory.status(region)
        ]
    )


def shm_register(engine: EngineApi, region: str, body: bytes) -> Reply:
    document = _optional_object(body, "shared memory register")
    key = document.get("key")
    offset = document.get("offset", 0)
    byte_size = document.get("byte_size")
    if not isinstance(key, str):
        raise InvalidArgumentError("shared memory register: 'key' must be a string")
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise InvalidArgumentError("shared memory register: 'offset' must be an integer")
    if not isinstance(byte_size, int) or isinstance(byte_size, bool):
        raise InvalidArgumentError("shared memory register: 'byte_size' must be an integer")
    engine.shared_memory.register(region, key, offset, byte_size)
    return _EMPTY_OK


def shm_unregister(engine: EngineApi, region: str) -> Reply:
    engine.shared_memory.unregister(region)
    return _EMPTY_OK


def cuda_shm_register(engine: EngineApi, region: str, body: bytes) -> Reply:
    raise UnsupportedError(CUDA_SHM_UNSUPPORTED)


CUDA_SHM_UNSUPPORTED = (
    "CUDA shared memory is not supported by packserve: register system shared memory "
    "(/v2/systemsharedmemory) instead"
)
