"""The web console: static pages served at /console on the HTTP port (`/` redirects there).

Everything the page shows it fetches from the public KServe v2 API, the statistics extension and
/v2/pipelines, like any client; nothing here reaches into the engine. The files are read once at
start-up and answered from memory, and nothing runs while nobody has the page open: the browser
does the polling, and only while the page is visible.

The one fact the page cannot learn from the protocol is whether load/unload is allowed (Triton
has no endpoint for the model control mode), so it is written into the page's <meta> tag; the
server refuses load/unload in the other modes regardless of what the page shows.
"""

from __future__ import annotations

from pathlib import Path

from packserve.frontends.http.reply import Reply

ASSETS = Path(__file__).parent / "console_assets"
PREFIX = "/console"
_INDEX = "index.html"
_CONTROL_MODE_MARK = "__MODEL_CONTROL_MODE__"
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".txt": b"text/plain; charset=utf-8",
}
# Defence in depth behind the page's own rule (model output only ever goes through textContent):
# no inline script, no script from elsewhere, requests only to this server.
_SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-cache"),
)
_REDIRECT = Reply(302, b"", b"text/plain", headers=((b"location", f"{PREFIX}/".encode()),))
_METHOD_NOT_ALLOWED = Reply(405, b'{"error":"the console only answers GET"}')


class ConsoleAssets:
    """The console's files, read once; `reply` answers a GET under /console (or `/`)."""

    def __init__(self, model_control_mode: str = "none", assets: Path = ASSETS) -> None:
        self._replies: dict[str, Reply] = {}
        for path in sorted(assets.iterdir()):
            content_type = _TYPES.get(path.suffix)
            if content_type is None or not path.is_file():
                continue  # README, LICENSE files and the like are not served
            body = path.read_bytes()
            if path.name == _INDEX:
                body = body.replace(_CONTROL_MODE_MARK.encode(), model_control_mode.encode())
            self._replies[path.name] = Reply(200, body, content_type, headers=_SECURITY_HEADERS)
        if _INDEX not in self._replies:
            raise FileNotFoundError(f"the console's {_INDEX} is missing from {assets}")

    def reply(self, method: str, path: str) -> Reply | None:
        """The answer for `path`, or None when the path is not the console's."""
        if path in ("", "/"):
            return _REDIRECT if method == "GET" else _METHOD_NOT_ALLOWED
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return None
        if method != "GET":
            return _METHOD_NOT_ALLOWED
        name = path[len(PREFIX) :].strip("/") or _INDEX
        return self._replies.get(name)
