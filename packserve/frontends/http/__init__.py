"""KServe v2 HTTP front end with Triton's extensions (binary tensor data, classification,
model repository, model configuration, statistics)."""

from packserve.frontends.http.app import ASGIApp, HttpApp, create_http_app
from packserve.frontends.http.console import ConsoleAssets
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.server import HttpServer, serve_http

__all__ = ["ASGIApp", "ConsoleAssets", "HttpApp", "HttpLimits", "HttpServer", "create_http_app", "serve_http"]
