"""The KServe v2 / Triton HTTP routes as one table: path pattern + method -> handler.

A path is split once at "/"; the routes with that many segments are tried in table order and the
first whose literal segments match decides: its handler for the request's method runs, or the
answer is 405 (the path exists, the method does not); no match is 404. `{name}` segments are
handed to the handler by name. Handlers are thin: they read what the request carries and call one
function of `handlers` (or `pipeline_route`). Runs on the event loop, once per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from packserve.core.engine_api import EngineApi
from packserve.frontends import header_forward
from packserve.frontends.http import handlers, pipeline_route
from packserve.frontends.http.content_encoding import inflate
from packserve.frontends.http.infer_decode import InferDecoder
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.reply import Reply

# Header names lower-case, as httptools gives them (the protocol lower-cases them).
Headers = Sequence[tuple[bytes, bytes]]


class RouteError(Exception):
    """No such route (404), or not with this method (405)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


NOT_FOUND = RouteError(404, "Not Found")
METHOD_NOT_ALLOWED = RouteError(405, "Method Not Allowed")


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What every handler may use, fixed for the life of the app."""

    engine: EngineApi
    limits: HttpLimits
    decoder: InferDecoder


@dataclass(slots=True)
class Call:
    """One request as a handler sees it: `params` holds the path's `{name}` segments."""

    method: str
    params: dict[str, str]
    headers: Headers
    body: bytes  # as received (already within max_body_bytes); `decoded_body` undoes its encoding


# Handlers that only look things up return the Reply; those that wait (infer, load) are coroutines.
Handler = Callable[[RouteContext, Call], "Reply | Awaitable[Reply]"]
ANY = "ANY"  # a handler that answers every method itself (trace settings: GET reads, POST changes)


class Route:
    __slots__ = ("captures", "length", "literals", "methods", "pattern")

    def __init__(self, pattern: str, **methods: Handler) -> None:
        """`Route("/v2/models/{model}/infer", POST=infer)`: keyword names are HTTP methods (or ANY)."""
        segments = pattern.strip("/").split("/")
        self.pattern = pattern
        self.methods = methods
        self.length = len(segments)
        literals = [(i, s) for i, s in enumerate(segments) if not s.startswith("{")]
        # Last segments first: they tell routes of the same prefix apart soonest (.../infer, .../ready).
        self.literals = tuple(reversed(literals))
        self.captures = tuple((i, s[1:-1]) for i, s in enumerate(segments) if s.startswith("{"))


class RouteTable:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self._by_length: dict[int, list[Route]] = {}
        for route in self.routes:
            self._by_length.setdefault(route.length, []).append(route)

    def find(self, method: str, parts: list[str]) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters for a split path; RouteError when there is none."""
        # Written out rather than split into helpers: this runs for every request.
        for route in self._by_length.get(len(parts), ()):
            for index, literal in route.literals:
                if parts[index] != literal:
                    break
            else:
                handler = route.methods.get(method) or route.methods.get(ANY)
                if handler is None:
                    raise METHOD_NOT_ALLOWED
                params = {}
                for index, name in route.captures:
                    params[name] = parts[index]
                return handler, params
        raise NOT_FOUND


def decoded_body(context: RouteContext, call: Call) -> bytes:
    """The body with its Content-Encoding (gzip, deflate) undone, under max_inflated_bytes."""
    encoding: bytes | None = None
    for name, value in call.headers:
        if name == b"content-encoding":
            encoding = value
    if encoding is not None:
        coding = encoding.decode("latin-1").strip().lower()
        if coding and coding != "identity":
            return inflate(call.body, coding, context.limits)
    return call.body


# ---- handlers, in the table's order ------------------------------------------------------------


def _server_metadata(context: RouteContext, call: Call) -> Reply:
    return handlers.server_metadata(context.engine)


def _live(context: RouteContext, call: Call) -> Reply:
    return handlers.live(context.engine)


def _ready(context: RouteContext, call: Call) -> Reply:
    return handlers.ready(context.engine)


def _not_found(context: RouteContext, call: Call) -> Reply:
    raise NOT_FOUND


def _all_statistics(context: RouteContext, call: Call) -> Reply:
    return handlers.model_statistics(context.engine, "", "")


async def _infer(context: RouteContext, call: Call) -> Reply:
    header_length: bytes | None = None
    for name, value in call.headers:
        if name == b"inference-header-content-length":
            header_length = value
    body = decoded_body(context, call)
    forwarded = header_forward.from_http(call.headers) if header_forward.http_enabled() else None
    model, version = call.params["model"], call.params.get("version", "")
    engine, decoder = context.engine, context.decoder
    return await handlers.infer(engine, decoder, model, version, body, header_length, forwarded)


def _model_metadata(context: RouteContext, call: Call) -> Reply:
    return handlers.model_metadata(context.engine, call.params["model"], call.params.get("version", ""))


def _model_ready(context: RouteContext, call: Call) -> Reply:
    return handlers.model_ready(context.engine, call.params["model"], call.params.get("version", ""))


def _model_config(context: RouteContext, call: Call) -> Reply:
    return handlers.model_config(context.engine, call.params["model"], call.params.get("version", ""))


def _model_statistics(context: RouteContext, call: Call) -> Reply:
    return handlers.model_statistics(context.engine, call.params["model"], call.params.get("version", ""))


def _trace_setting(context: RouteContext, call: Call) -> Reply:
    body = decoded_body(context, call) if call.method == "POST" else b""
    return handlers.trace_setting(context.engine, call.method, call.params.get("model", ""), body)


async def _pipeline(context: RouteContext, call: Call) -> Reply:
    body = decoded_body(context, call)
    model, version = call.params["model"], call.params.get("version", "")
    return Reply(200, await pipeline_route.infer_raw_image(context.engine, model, version, body))


def _repository_index(context: RouteContext, call: Call) -> Reply:
    return handlers.repository_index(context.engine, decoded_body(context, call))


async def _load(context: RouteContext, call: Call) -> Reply:
    return await handlers.load_model(context.engine, call.params["model"], decoded_body(context, call))


async def _unload(context: RouteContext, call: Call) -> Reply:
    return await handlers.unload_model(context.engine, call.params["model"], decoded_body(context, call))


def _shm_status(context: RouteContext, call: Call) -> Reply:
    return handlers.shm_status(context.engine, call.params.get("region", ""))


def _shm_register(context: RouteContext, call: Call) -> Reply:
    region = call.params["region"]
    if not region:
        raise NOT_FOUND
    return handlers.shm_register(context.engine, region, decoded_body(context, call))


def _shm_unregister(context: RouteContext, call: Call) -> Reply:
    return handlers.shm_unregister(context.engine, call.params.get("region", ""))


def _cuda_shm_status(context: RouteContext, call: Call) -> Reply:
    # No CUDA region can ever be registered: its status is the empty list, as in Triton.
    return Reply(200, b"[]")


def _cuda_shm_register(context: RouteContext, call: Call) -> Reply:
    region = call.params["region"]
    if not region:
        raise NOT_FOUND
    return handlers.cuda_shm_register(context.engine, region, decoded_body(context, call))


def _cuda_shm_unregister(context: RouteContext, call: Call) -> Reply:
    return Reply(200)


def _model_routes(prefix: str) -> list[Route]:
    return [
        Route(f"{prefix}/infer", POST=_infer),  # first: the hot path
        Route(prefix, GET=_model_metadata),
        Route(f"{prefix}/ready", GET=_model_ready),
        Route(f"{prefix}/config", GET=_model_config),
        Route(f"{prefix}/stats", GET=_model_statistics),
    ]


def _shared_memory_routes(kind: str, status: Handler, register: Handler, unregister: Handler) -> list[Route]:
    base, region = f"/v2/{kind}", f"/v2/{kind}/region/{{region}}"
    return [
        Route(f"{base}/status", GET=status),
        Route(f"{region}/status", GET=status),
        Route(f"{region}/register", POST=register),
        Route(f"{base}/unregister", POST=unregister),
        Route(f"{region}/unregister", POST=unregister),
        # Any other action: 404 to a POST, 405 to other methods (the method is checked first).
        Route(f"{base}/{{action}}", POST=_not_found),
        Route(f"{region}/{{action}}", POST=_not_found),
    ]


# First match wins among routes of the same length: literal routes stand before the `{name}`
# routes that would also match them (/v2/models/stats before /v2/models/{model}).
ROUTES = RouteTable(
    [
        Route("/v2/models/stats", GET=_all_statistics),
        *_model_routes("/v2/models/{model}"),
        *_model_routes("/v2/models/{model}/versions/{version}"),
        Route("/v2", GET=_server_metadata),
        Route("/v2/health/live", GET=_live),
        Route("/v2/health/ready", GET=_ready),
        Route("/v2/health/{probe}", GET=_not_found),  # 405 to other methods, as for live and ready
        Route("/v2/models/{model}/trace/setting", ANY=_trace_setting),
        Route("/v2/trace/setting", ANY=_trace_setting),
        Route("/v2/pipelines/{model}", POST=_pipeline),
        Route("/v2/pipelines/{model}/versions/{version}", POST=_pipeline),
        Route("/v2/pipelines/{model}/{other}/{version}", POST=_not_found),  # 405 to other methods
        Route("/v2/repository/index", POST=_repository_index),
        Route("/v2/repository/models/{model}/load", POST=_load),
        Route("/v2/repository/models/{model}/unload", POST=_unload),
        *_shared_memory_routes("systemsharedmemory", _shm_status, _shm_register, _shm_unregister),
        *_shared_memory_routes(
            "cudasharedmemory", _cuda_shm_status, _cuda_shm_register, _cuda_shm_unregister
        ),
    ]
)
