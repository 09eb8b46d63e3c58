"""The web console at /console, driven in a real browser (Playwright + Debian's chromium) against a
live `packserve serve` on the vision_stack demo repository.

What must hold: the Models table lists what the repository index lists, with load/unload buttons
only in EXPLICIT mode; the Live charts move while load runs; the Pipeline graph has one node per
ensemble step; Try it draws the face box at the coordinates the API returns (read from the SVG);
a bad file gives a readable error; markup in a model's labels or OCR strings stays text; a
plan.json shows as table and plots. Every view is saved as a screenshot (see console_browser.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packserve.demo import samples
from packserve.demo.build import ENSEMBLE, build_vision_stack
from packserve.errors import NotFoundError
from tests.e2e.console_browser import (
    BROKEN_MODEL,
    BROKEN_REASON,
    MARKUP_LABEL,
    MARKUP_MODEL,
    MARKUP_TEXT,
    SCREENSHOTS,
    BackgroundLoad,
    add_console_models,
    chromium_path,
)
from tests.e2e.e2e_server import LiveServer, LiveServerFactory, direct_http_session

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="pip install -e '.[dev]' installs playwright"
)

pytestmark = pytest.mark.slow

HTTP = direct_http_session()
WAIT_MS = 60_000  # a loaded CI machine runs the demo pipeline in seconds, not milliseconds
PLAN_JSON = Path(__file__).resolve().parents[2] / "docs" / "examples" / "seven_models_v100_plan" / "plan.json"


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    try:
        repository = build_vision_stack(tmp_path_factory.mktemp("vision-stack"), progress=False)
    except NotFoundError as missing:  # the weights packages are an optional install
        pytest.skip(f"demo weights not installed: {missing}")
    add_console_models(repository)
    return live_server_factory(repository, control_mode="explicit", load_models=["*"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium: scripts/setup_dev.sh installs Debian's chromium package")
    with playwright_sync.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium refuses its sandbox.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    return samples.encode(samples.photo("astronaut"), "JPEG")


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def repository_index(server: LiveServer) -> list[dict[str, str]]:
    reply = HTTP.post(f"{server.http_base}/v2/repository/index", json={}, timeout=30)
    reply.raise_for_status()
    index: list[dict[str, str]] = reply.json()
    return index


def choose_image(page: Any, name: str, data: bytes, mime: str = "image/jpeg") -> None:
    page.set_input_files("#try-file", files=[{"name": name, "mimeType": mime, "buffer": data}])


def run_try_it(page: Any, server: LiveServer, model: str, name: str, data: bytes) -> str:
    page.goto(f"{server.http_base}/console/#try")
    page.wait_for_selector(f'#try-model option[value="{model}"]', state="attached")
    page.select_option("#try-model", model)
    choose_image(page, name, data)
    page.click("#try-run")
    page.wait_for_selector("#try-stage[data-done]", state="attached")
    done: str = page.get_attribute("#try-stage", "data-done")
    return done


# ---- serving the page -----------------------------------------------------------------------------


def test_root_redirects_to_the_console_and_assets_are_served(server: LiveServer) -> None:
    root = HTTP.get(f"{server.http_base}/", allow_redirects=False, timeout=10)
    assert root.status_code == 302 and root.headers["location"] == "/console/"
    page = HTTP.get(f"{server.http_base}/console/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'content="explicit"' in page.text  # the control mode the page shows buttons for
    script = HTTP.get(f"{server.http_base}/console/app.js", timeout=10)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert HTTP.get(f"{server.http_base}/console/missing.js", timeout=10).status_code == 404
    assert HTTP.post(f"{server.http_base}/console/", data=b"", timeout=10).status_code == 405


def test_no_console_flag_turns_it_off(
    live_server_factory: LiveServerFactory, example_repository: Path
) -> None:
    quiet = live_server_factory(example_repository, extra_args=["--no-console"])
    assert HTTP.get(f"{quiet.http_base}/", allow_redirects=False, timeout=10).status_code == 404
    assert HTTP.get(f"{quiet.http_base}/console/", timeout=10).status_code == 404
    assert HTTP.get(f"{quiet.http_base}/v2/health/ready", timeout=10).status_code == 200


# ---- Models ------------------------------------------------------------------------------------------


def test_models_table_lists_the_repository_index(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.http_base}/")  # the redirect lands on the console
    page.wait_for_selector("#models-table[data-loaded]", state="attached")
    index = repository_index(server)
    rows = page.eval_on_selector_all(
        "#models-table tbody tr",
        "rows => rows.map(r => [r.dataset.model, r.querySelector('.version').textContent, r.querySelector('.state').textContent])",
    )
    assert sorted(map(tuple, rows)) == sorted((e["name"], e.get("version", "-"), e["state"]) for e in index)
    config = HTTP.get(f"{server.http_base}/v2/models/retinaface/config", timeout=10).json()
    retina = page.locator('#models-table tr[data-model="retinaface"] td')
    assert retina.nth(3).text_content() == (config.get("platform") or config.get("backend"))
    assert retina.nth(5).text_content() == str(config["max_batch_size"])
    # EXPLICIT mode: Unload for the loaded models, Load for the one that failed.
    ready = [e["name"] for e in index if e["state"] == "READY"]
    assert page.locator("#models-table button.unload").count() == len(ready) == len(index) - 1
    broken = f'#models-table tr[data-model="{BROKEN_MODEL}"]'
    assert page.locator(f"{broken} button.load").count() == 1
    reason = next(e["reason"] for e in index if e["name"] == BROKEN_MODEL)
    assert BROKEN_REASON in reason
    assert page.text_content(f"{broken} .reason") == reason  # as text: the <b> in it made no element
    assert page.locator("#models-table b").count() == 0
    screenshot(page, "models")


def test_unload_and_load_buttons(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.http_base}/console/#models")
    row = f'#models-table tr[data-model="{MARKUP_MODEL}"]'
    page.click(f"{row} button.unload")
    page.wait_for_selector(f"{row} button.load")
    assert page.text_content(f"{row} .state") != "READY"
    assert HTTP.get(f"{server.http_base}/v2/models/{MARKUP_MODEL}/ready", timeout=10).status_code == 400
    page.click(f"{row} button.load")
    page.wait_for_selector(f"{row} button.unload")
    assert page.text_content(f"{row} .state") == "READY"


def test_no_load_buttons_unless_explicit_mode(
    page: Any, live_server_factory: LiveServerFactory, example_repository: Path
) -> None:
    fixed = live_server_factory(example_repository)  # --model-control-mode none
    page.goto(f"{fixed.http_base}/console/")
    page.wait_for_selector("#models-table[data-loaded]", state="attached")
    assert page.locator("#models-table tbody tr").count() == len(repository_index(fixed))
    assert page.locator("#models-table button").count() == 0
    assert "NONE" in page.text_content("#control-hint")


# ---- Live and the pipeline graph ----------------------------------------------------------------


def test_live_charts_move_under_load(page: Any, server: LiveServer, astronaut_jpeg: bytes) -> None:
    page.goto(f"{server.http_base}/console/#live")
    row = f'#live-table tr[data-model="{ENSEMBLE}"]'
    page.wait_for_selector(row, state="attached")
    with BackgroundLoad(f"{server.http_base}/v2/pipelines/{ENSEMBLE}", astronaut_jpeg):
        page.wait_for_function(
            f"() => {{ const r = document.querySelector('{row}'); return r && Number(r.dataset.rate) > 0; }}"
        )
        first = page.get_attribute(f"{row} polyline", "points")
        page.wait_for_function(
            f"p => document.querySelector('{row} polyline').getAttribute('points') !== p", arg=first
        )
        # The average batch needs an interval in which retinaface ran: wait for one.
        retina_batch = '#live-table tr[data-model="retinaface"] .batch'
        page.wait_for_function(f"() => document.querySelector('{retina_batch}')?.textContent !== '-'")
        batch = page.text_content(retina_batch)
        screenshot(page, "live")
    assert float(page.get_attribute(f"{row} svg", "data-points")) >= 2
    assert batch != "-" and float(batch) >= 1.0


def test_pipeline_graph_has_a_node_per_step(page: Any, server: LiveServer, astronaut_jpeg: bytes) -> None:
    config = HTTP.get(f"{server.http_base}/v2/models/{ENSEMBLE}/config", timeout=10).json()
    steps = config["ensemble_scheduling"]["step"]
    page.goto(f"{server.http_base}/console/#graph")
    page.wait_for_selector(f'#graph-canvas[data-model="{ENSEMBLE}"] svg', state="attached")
    step_models = page.eval_on_selector_all("#graph-canvas .node.step", "ns => ns.map(n => n.dataset.model)")
    assert sorted(step_models) == sorted(s["model_name"] for s in steps)
    io = page.locator("#graph-canvas .node.io").count()
    assert io == len(config["input"]) + len(config["output"])
    targets = page.eval_on_selector_all("#graph-canvas .node.target", "ns => ns.map(n => n.dataset.model)")
    assert sorted(targets) == ["onet", "text_cls", "text_rec"]  # what the three region maps run
    crops = page.eval_on_selector_all("#graph-canvas .node.crop", "ns => ns.map(n => n.dataset.model)")
    assert sorted(crops) == ["face_crops", "text_angle_crops", "text_read_crops"]  # what cuts their regions
    edges = page.eval_on_selector_all(
        "#graph-canvas path.edge.region", "ps => ps.map(p => [p.dataset.from, p.dataset.to])"
    )
    crop_ids = page.eval_on_selector_all("#graph-canvas .node.crop", "ns => ns.map(n => n.dataset.id)")
    assert all(any(to == crop for _, to in edges) and any(frm == crop for frm, _ in edges) for crop in crop_ids)
    with BackgroundLoad(f"{server.http_base}/v2/pipelines/{ENSEMBLE}", astronaut_jpeg):
        page.wait_for_function(
            "() => Number(document.querySelector('#graph-canvas .node.step[data-model=\"retinaface\"]')"
            "?.dataset.rate || 0) > 0"
        )
        screenshot(page, "graph")


# ---- Try it ------------------------------------------------------------------------------------------


def test_try_it_draws_the_face_box_the_api_returns(
    page: Any, server: LiveServer, astronaut_jpeg: bytes
) -> None:
    reply = HTTP.post(f"{server.http_base}/v2/pipelines/{ENSEMBLE}", data=astronaut_jpeg, timeout=60)
    expected = reply.json()["outputs"]["FACE_BOXES"]
    assert len(expected) == 1
    assert run_try_it(page, server, ENSEMBLE, "astronaut.jpg", astronaut_jpeg) == "ok"
    drawn = page.eval_on_selector_all(
        'rect.face-box[data-output="FACE_BOXES"]',
        "rs => rs.map(r => ['x', 'y', 'width', 'height'].map(a => Number(r.getAttribute(a))))",
    )
    x0, y0, x1, y1 = expected[0]
    assert len(drawn) == 1
    assert drawn[0] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=1e-3)
    assert page.get_attribute("#try-stage svg", "viewBox") == "0 0 512 512"  # image pixels
    assert page.locator("#try-stage circle.landmark").count() == 5
    assert page.locator('#try-timing tr[data-model="retinaface"]').count() == 1
    assert page.locator("#try-json").is_hidden()
    page.check("#try-show-json")
    raw = json.loads(page.text_content("#try-json"))
    assert raw["outputs"]["FACE_BOXES"][0] == pytest.approx(expected[0])
    screenshot(page, "try-it")


def test_try_it_bad_file_shows_a_readable_error(page: Any, server: LiveServer) -> None:
    assert run_try_it(page, server, ENSEMBLE, "holiday.jpg", b"this is not an image") == "error"
    message = page.text_content("#try-error")
    assert page.locator("#try-error").is_visible()
    assert "holiday.jpg" in message and "answered 400" in message, message
    assert page.locator("#try-stage svg").count() == 0
    screenshot(page, "try-it-error")


def test_markup_in_model_output_stays_text(page: Any, server: LiveServer, astronaut_jpeg: bytes) -> None:
    assert run_try_it(page, server, MARKUP_MODEL, "astronaut.jpg", astronaut_jpeg) == "ok"
    assert page.text_content('#try-findings ul[data-output="CONTENT_LABELS"] li').startswith(MARKUP_LABEL)
    assert page.text_content("#try-findings .text-item").startswith(MARKUP_TEXT)
    assert page.text_content("#try-stage text.text-string") == MARKUP_TEXT
    # Inserted as HTML, the strings would have made these elements (whatever the CSP then blocked).
    made = page.eval_on_selector_all(
        "#view-try img[src='x'], #view-try script, #view-try b", "ns => ns.length"
    )
    assert made == 0
    assert page.evaluate("() => window.__pwned") is None


# ---- Plan --------------------------------------------------------------------------------------------


def test_plan_view_shows_the_table_and_plots(page: Any, server: LiveServer, tmp_path: Path) -> None:
    plan = json.loads(PLAN_JSON.read_text(encoding="utf-8"))
    page.goto(f"{server.http_base}/console/#plan")
    page.set_input_files("#plan-file", str(PLAN_JSON))
    page.wait_for_selector("#plan-table tbody tr", state="attached")
    models = [(pod["name"], m["name"]) for pod in plan["pods"] for m in pod["models"]]
    shown = page.eval_on_selector_all(
        "#plan-table tbody tr", "rs => rs.map(r => [r.dataset.pod, r.dataset.model])"
    )
    assert [tuple(r) for r in shown] == models
    assert page.locator("#plan-plots svg.plot").count() == 3
    screenshot(page, "plan")
    broken = tmp_path / "plan.json"
    broken.write_text('{"pods": ', encoding="utf-8")
    page.set_input_files("#plan-file", str(broken))
    page.wait_for_selector("#plan-error:not([hidden])")
    assert "is not JSON" in page.text_content("#plan-error")
