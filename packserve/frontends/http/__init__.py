"""KServe v2 HTTP front end with Triton's extensions (binary tensor data, classification,
model repository, model configuration, statistics)."""

from packserve.frontends.http.app import HttpApp
from packserve.frontends.http.connections import ConnectionLimits, raise_open_file_limit
from packserve.frontends.http.console import ConsoleAssets
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.server import HttpServer, serve_http

__all__ = [
    "ConnectionLimits",
    "ConsoleAssets",
    "HttpApp",
    "HttpLimits",
    "HttpServer",
    "raise_open_file_limit",
    "serve_http",
]
