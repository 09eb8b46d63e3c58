"""The web console's route and files, without a browser (tests/e2e/test_console_browser.py drives
the page itself): what is served where, with which headers, and what the files may not do."""

from __future__ import annotations

import re
from typing import Any

import pytest

from packserve.frontends.http import ConsoleAssets
from packserve.frontends.http.console import ASSETS
from packserve.frontends.http.reply import Reply, encode_reply
from tests.fakes.http_client import HttpCaller

ASSET_FILES = sorted(p.name for p in ASSETS.iterdir())


@pytest.fixture
def console_call(engine: Any) -> HttpCaller:
    return HttpCaller(engine, console=ConsoleAssets("explicit"))


async def test_root_redirects_to_the_console(console_call: Any) -> None:
    result = await console_call("GET", "/")
    assert result.status == 302
    assert result.headers[b"location"] == b"/console/"


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/index.html"])
async def test_the_page_names_the_control_mode(console_call: Any, path: str) -> None:
    result = await console_call("GET", path)
    assert result.status == 200
    assert result.headers[b"content-type"] == b"text/html; charset=utf-8"
    assert b'name="packserve-model-control-mode" content="explicit"' in result.body
    assert b"__MODEL_CONTROL_MODE__" not in result.body
    assert b"script-src 'self'" in result.headers[b"content-security-policy"]


@pytest.mark.parametrize("name", ASSET_FILES)
async def test_every_asset_is_served_with_its_type(console_call: Any, name: str) -> None:
    result = await console_call("GET", f"/console/{name}")
    assert result.status == 200, name
    expected = {"html": b"text/html", "js": b"text/javascript", "css": b"text/css"}[name.rsplit(".", 1)[1]]
    assert result.headers[b"content-type"].startswith(expected)
    assert result.headers[b"x-content-type-options"] == b"nosniff"


async def test_unknown_files_and_other_methods_are_refused(console_call: Any) -> None:
    assert (await console_call("GET", "/console/nope.js")).status == 404
    assert (await console_call("GET", "/consoles")).status == 404
    assert (await console_call("GET", "/console/../pyproject.toml")).status == 404
    assert (await console_call("POST", "/console/", b"x")).status == 405
    assert (await console_call("DELETE", "/")).status == 405


async def test_the_protocol_still_answers_beside_the_console(console_call: Any) -> None:
    assert (await console_call("GET", "/v2/health/ready")).status == 200
    assert (await console_call("GET", "/v2/models/simple/config")).status == 200


async def test_without_the_console_nothing_is_served_outside_v2(call: Any) -> None:
    assert (await call("GET", "/")).status == 404
    assert (await call("GET", "/console/")).status == 404


def test_extra_headers_reach_the_wire() -> None:
    wire = encode_reply(
        Reply(302, b"", b"text/plain", headers=((b"location", b"/console/"),)), keep_alive=True
    )
    assert b"\r\nlocation: /console/\r\n" in wire
    assert wire.endswith(b"\r\n\r\n")


def test_the_assets_ship_as_package_data() -> None:
    # pyproject.toml's package-data takes the folder's files, not sub-folders: keep it flat.
    assert all(p.is_file() for p in ASSETS.iterdir())
    assert {"index.html", "app.js", "console.css"} <= set(ASSET_FILES)


@pytest.mark.parametrize("name", [n for n in ASSET_FILES if n.endswith((".js", ".html"))])
def test_the_page_builds_no_markup_from_strings_and_loads_nothing_from_elsewhere(name: str) -> None:
    text = (ASSETS / name).read_text(encoding="utf-8")
    # Model output (labels, OCR text) must never become markup; textContent is the only way in.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", text), name
    # No CDN, no font service: everything comes from this server (the CSP says so too).
    assert not re.search(r"(src|href|from|import)\s*[=(]?\s*[\"']https?://", text), name
