"""The `vision_stack` demo pipeline (real pretrained models) served by a live `packserve serve`,
checked on real pictures through every way in: the KServe v2 infer endpoint with the official
`tritonclient.http` and `tritonclient.grpc`, the raw-image route POST /v2/pipelines/vision_stack,
and perf_analyzer with a real JPEG.

What the answers must say: scikit-image's astronaut photo holds exactly one face, with its five
landmarks inside the face box, and is rated "sfw"; the lines of a rendered text image are read.
Bad image bytes get a 4xx that names the problem, and the server goes on serving. Concurrent
images are batched at the composing models.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from packserve.demo import samples
from packserve.demo.build import ENSEMBLE, build_vision_stack
from packserve.errors import NotFoundError
from tests.e2e.e2e_perf_analyzer import PERF_ANALYZER, run_perf_analyzer, write_bytes_input_data
from tests.e2e.e2e_server import LiveServer, LiveServerFactory, direct_http_session

pytestmark = pytest.mark.slow

HTTP = direct_http_session()
PIPELINE_TIMEOUT_S = 60
CONCURRENT_IMAGES = 8
STATS_SETTLE_TIMEOUT_S = 10.0
# Models that batch and see one row per image (preprocessing and the whole-image networks).
BATCHING_PER_IMAGE = ("vision_preprocess", "retinaface", "text_det", "opennsfw", "orientation")


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    try:
        repository = build_vision_stack(tmp_path_factory.mktemp("vision-stack"), progress=False)
    except NotFoundError as missing:  # the weights packages are an optional install
        pytest.skip(f"demo weights not installed: {missing}")
    return live_server_factory(repository)


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    return samples.encode(samples.photo("astronaut"), "JPEG")


@pytest.fixture(scope="module")
def text_png() -> bytes:
    return samples.encode(samples.render_text(samples.SAMPLE_TEXT))


# ---- reading answers ----------------------------------------------------------------------------


def infer_http(client: httpclient.InferenceServerClient, image: bytes) -> dict[str, np.ndarray]:
    tensor = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[image]], dtype=np.object_))
    result = client.infer(ENSEMBLE, [tensor])
    return {out["name"]: result.as_numpy(out["name"]) for out in result.get_response()["outputs"]}


def infer_pipeline(server: LiveServer, image: bytes) -> dict[str, Any]:
    reply = HTTP.post(
        f"{server.http_base}/v2/pipelines/{ENSEMBLE}",
        data=image,
        headers={"Content-Type": "application/octet-stream"},
        timeout=PIPELINE_TIMEOUT_S,
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert body["model_name"] == ENSEMBLE
    assert body["model_version"] == "1"
    outputs: dict[str, Any] = body["outputs"]
    return outputs


def _strings(values: Any) -> list[str]:
    flat = np.asarray(values, dtype=np.object_).reshape(-1)
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]


def _squashed(text: str) -> str:
    """Case and spaces removed: the recognizer may drop the spaces between words."""
    return re.sub(r"\s+", "", text).lower()


def assert_astronaut(outputs: dict[str, Any]) -> None:
    """One face, high score, in the upper middle of the 512x512 photo, landmarks inside its box;
    content rated sfw; a unit-length embedding."""
    boxes = np.asarray(outputs["FACE_BOXES"], dtype=np.float32).reshape(-1, 4)
    assert boxes.shape == (1, 4), f"expected exactly one face, got boxes {boxes.tolist()}"
    x0, y0, x1, y1 = boxes[0]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert 150 < (x0 + x1) / 2 < 300 and 40 < (y0 + y1) / 2 < 220, f"face box {boxes[0].tolist()}"
    assert float(np.asarray(outputs["FACE_SCORES"]).reshape(-1)[0]) > 0.8
    points = np.asarray(outputs["FACE_LANDMARKS"], dtype=np.float32).reshape(-1, 5, 2)
    assert points.shape == (1, 5, 2)
    xs, ys = points[0, :, 0], points[0, :, 1]
    assert np.all((x0 <= xs) & (xs <= x1) & (y0 <= ys) & (ys <= y1)), (
        f"landmarks {points[0].tolist()} outside the face box {boxes[0].tolist()}"
    )
    labels = _strings(outputs["CONTENT_LABELS"])
    scores = np.asarray(outputs["CONTENT_SCORES"], dtype=np.float32).reshape(-1)
    assert labels[0] == "sfw" and scores[0] > 0.5, f"content {labels} {scores.tolist()}"
    embedding = np.asarray(outputs["EMBEDDING"], dtype=np.float32).reshape(-1)
    assert embedding.shape == (1024,)
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-3


def assert_reads_sample_text(outputs: dict[str, Any]) -> None:
    read = {_squashed(text) for text in _strings(outputs["TEXT"])}
    expected = {_squashed(line) for line in samples.SAMPLE_TEXT}
    assert expected <= read, f"expected lines {sorted(expected)}, read {sorted(read)}"
    assert np.asarray(outputs["FACE_BOXES"]).size == 0, "a face found in a text image"


# ---- the answers --------------------------------------------------------------------------------


def test_kserve_http_finds_the_astronaut_face(
    client: httpclient.InferenceServerClient, astronaut_jpeg: bytes
) -> None:
    assert_astronaut(infer_http(client, astronaut_jpeg))


def test_kserve_http_reads_rendered_text(client: httpclient.InferenceServerClient, text_png: bytes) -> None:
    assert_reads_sample_text(infer_http(client, text_png))


def test_pipeline_route_gives_the_same_answers(
    server: LiveServer, client: httpclient.InferenceServerClient, astronaut_jpeg: bytes, text_png: bytes
) -> None:
    astronaut = infer_pipeline(server, astronaut_jpeg)
    assert_astronaut(astronaut)
    # The route is a door onto the same pipeline: the same picture gives the same face.
    kserve = infer_http(client, astronaut_jpeg)
    np.testing.assert_allclose(np.asarray(astronaut["FACE_BOXES"]), kserve["FACE_BOXES"], atol=0.5)
    assert_reads_sample_text(infer_pipeline(server, text_png))
    # A PNG of the photo goes through Pillow rather than libjpeg-turbo, with the same result.
    assert_astronaut(infer_pipeline(server, samples.encode(samples.photo("astronaut"), "PNG")))


def test_kserve_grpc_finds_the_astronaut_face(server: LiveServer, astronaut_jpeg: bytes) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[astronaut_jpeg]], dtype=np.object_))
        result = client.infer(ENSEMBLE, [tensor])
        names = [output.name for output in result.get_response().outputs]
        assert_astronaut({name: result.as_numpy(name) for name in names})
    finally:
        client.close()


# ---- bad images ---------------------------------------------------------------------------------


def _corrupt_scan(jpeg: bytes) -> bytes:
    """A JPEG whose header is intact but whose compressed scan data is overwritten mid-stream."""
    data = bytearray(jpeg)
    middle = len(data) // 2
    data[middle : middle + 256] = b"\x5a" * 256
    return bytes(data)


# (case, how to spoil the astronaut JPEG, what the error must say)
BAD_IMAGES = [
    ("empty", lambda jpeg: b"", r"empty|0 bytes"),
    ("truncated-jpeg", lambda jpeg: jpeg[: len(jpeg) // 2], r"truncated"),
    ("corrupt-jpeg", _corrupt_scan, r"corrupt"),
    ("corrupt-jpeg-header", lambda jpeg: jpeg[:20] + bytes(200) + jpeg[220:], r"corrupt JPEG header"),
    ("not-an-image", lambda jpeg: b"name,score\nastronaut,1\n", r"not a supported image"),
]


@pytest.mark.parametrize(("spoil", "problem"), [c[1:] for c in BAD_IMAGES], ids=[c[0] for c in BAD_IMAGES])
def test_pipeline_route_rejects_bad_image_and_keeps_serving(
    server: LiveServer, astronaut_jpeg: bytes, spoil: Any, problem: str
) -> None:
    reply = HTTP.post(f"{server.http_base}/v2/pipelines/{ENSEMBLE}", data=spoil(astronaut_jpeg), timeout=30)
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    message = reply.json()["error"]
    assert re.search(problem, message, re.IGNORECASE), message
    assert ENSEMBLE in message
    assert_astronaut(infer_pipeline(server, astronaut_jpeg))


@pytest.mark.parametrize(("spoil", "problem"), [c[1:] for c in BAD_IMAGES], ids=[c[0] for c in BAD_IMAGES])
def test_kserve_rejects_bad_image_and_keeps_serving(
    client: httpclient.InferenceServerClient, astronaut_jpeg: bytes, spoil: Any, problem: str
) -> None:
    with pytest.raises(InferenceServerException) as error:
        infer_http(client, spoil(astronaut_jpeg))
    status = error.value.status()
    assert status is not None and status.startswith("4"), (status, str(error.value))
    message = error.value.message()
    assert re.search(problem, message, re.IGNORECASE), message
    assert "IMAGE" in message and ENSEMBLE in message, message
    assert_astronaut(infer_http(client, astronaut_jpeg))


# ---- batching across requests and perf_analyzer -----------------------------------------------


def _per_model_counts(client: httpclient.InferenceServerClient) -> dict[str, tuple[int, int]]:
    stats = client.get_inference_statistics()["model_stats"]
    return {m["name"]: (int(m["inference_count"]), int(m["execution_count"])) for m in stats}


def test_concurrent_images_are_batched_at_the_composing_models(
    server: LiveServer, astronaut_jpeg: bytes, request: pytest.FixtureRequest
) -> None:
    counter = httpclient.InferenceServerClient(server.http_url)
    request.addfinalizer(counter.close)
    before = _per_model_counts(counter)

    def one_image(_: int) -> None:
        own = httpclient.InferenceServerClient(server.http_url, network_timeout=PIPELINE_TIMEOUT_S)
        try:
            assert_astronaut(infer_http(own, astronaut_jpeg))
        finally:
            own.close()

    with ThreadPoolExecutor(CONCURRENT_IMAGES) as pool:
        list(pool.map(one_image, range(CONCURRENT_IMAGES)))
    # Every image is one row of each of these models, however the rows were grouped. A statistics
    # record may land a moment after the answer it belongs to, so read until all rows are counted.
    deadline = time.monotonic() + STATS_SETTLE_TIMEOUT_S
    while True:
        after = _per_model_counts(counter)
        deltas = {m: (after[m][0] - before[m][0], after[m][1] - before[m][1]) for m in BATCHING_PER_IMAGE}
        if all(rows == CONCURRENT_IMAGES for rows, _ in deltas.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert all(rows == CONCURRENT_IMAGES for rows, _ in deltas.values()), deltas
    batched = [model for model, (rows, executions) in deltas.items() if executions < rows]
    assert batched, f"no model ran two images in one execution: (rows, executions) {deltas}"


@pytest.mark.skipif(not PERF_ANALYZER.is_file(), reason="perf_analyzer not installed")
def test_perf_analyzer_sends_a_real_jpeg(server: LiveServer, astronaut_jpeg: bytes, tmp_path: Path) -> None:
    data = write_bytes_input_data(tmp_path / "astronaut.json", "IMAGE", astronaut_jpeg, [1, 1])
    report = run_perf_analyzer(
        ENSEMBLE,
        server.http_url,
        extra_args=["--input-data", str(data), "--measurement-request-count", "3"],
    )
    assert report.server.counts.get("Successful request count", 0) > 0, report.output
    assert {"queue", "compute"} <= set(report.server.latency_parts_usec), report.output
    # Every model an ensemble step names is listed (region_map targets are not ensemble steps).
    assert set(BATCHING_PER_IMAGE) | {"face_decode", "text_decode", "content_label"} <= set(
        report.composing
    ), report.output
    assert report.composing["retinaface"].latency_parts_usec["compute infer"] > 0, report.output
