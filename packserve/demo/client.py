"""Demo client of the `vision_stack` pipeline.

    python -m packserve.demo.client --url localhost:8000

Sends scikit-image's sample photos and a rendered text image once through the raw-bytes pipeline
route (POST /v2/pipelines/vision_stack) and once through the KServe v2 infer endpoint with
tritonclient, prints what was found, then measures throughput at a few concurrencies.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import requests
import tritonclient.http as httpclient

from packserve.demo import samples
from packserve.demo.build import ENSEMBLE


def infer_kserve(client: httpclient.InferenceServerClient, image: bytes) -> dict[str, np.ndarray]:
    tensor = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[image]], dtype=object))
    result = client.infer(ENSEMBLE, [tensor])
    response = result.get_response()
    return {output["name"]: result.as_numpy(output["name"]) for output in response["outputs"]}


def infer_pipeline(url: str, image: bytes) -> dict[str, Any]:
    response = requests.post(f"http://{url}/v2/pipelines/{ENSEMBLE}", data=image, timeout=60)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return dict(body.get("outputs", {}))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(outputs: dict[str, Any]) -> str:
    faces = np.asarray(outputs.get("FACE_BOXES", []), dtype=np.float32).reshape(-1, 4)
    texts = [_text(t) for t in np.asarray(outputs.get("TEXT", []), dtype=object).reshape(-1)]
    content = [_text(t) for t in np.asarray(outputs.get("CONTENT_LABELS", []), dtype=object).reshape(-1)]
    scores = np.asarray(outputs.get("CONTENT_SCORES", []), dtype=np.float32).reshape(-1)
    orientation = [
        _text(t) for t in np.asarray(outputs.get("DOCUMENT_ORIENTATION", []), dtype=object).reshape(-1)
    ]
    parts = [f"{len(faces)} face(s) {[[round(float(v)) for v in box] for box in faces]}"]
    parts.append(f"text {texts}")
    if content:
        parts.append(f"content {content[0]}={scores[0]:.3f}")
    # A document-page classifier: its answer means something only on a page of text.
    if orientation and texts:
        parts.append(f"text page rotated {orientation[0]} deg")
    elif orientation:
        parts.append("page orientation: n/a (no text; a document classifier)")
    return "; ".join(parts)


def throughput(url: str, image: bytes, concurrency: int, requests_per_worker: int) -> float:
    def worker() -> None:
        client = httpclient.InferenceServerClient(url)
        for _ in range(requests_per_worker):
            infer_kserve(client, image)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return concurrency * requests_per_worker / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="localhost:8000", help="host:port of the HTTP endpoint")
    parser.add_argument("--concurrency", default="1,2,4", help="comma list of concurrencies to measure")
    parser.add_argument("--requests", type=int, default=8, help="requests per concurrent worker")
    args = parser.parse_args(argv)
    images = {name: samples.encode(samples.photo(name), "JPEG") for name in samples.PHOTOS}
    images["rendered text"] = samples.encode(samples.render_text())
    client = httpclient.InferenceServerClient(args.url)
    for name, image in images.items():
        print(f"[kserve]   {name}: {describe(infer_kserve(client, image))}")
        try:
            print(f"[pipeline] {name}: {describe(infer_pipeline(args.url, image))}")
        except requests.RequestException as error:
            print(f"[pipeline] {name}: route unavailable ({error})")
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        rate = throughput(args.url, images["astronaut"], concurrency, args.requests)
        print(f"concurrency {concurrency}: {rate:.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
