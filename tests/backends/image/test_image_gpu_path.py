"""The GPU path's device-independent logic, run on a CPU torch device: same geometry, same pixels
(to within one level after resizing: OpenCV's fixed-point weights vs torch's float ones)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes.backends import RecordingTimer
from tests.fakes.image import encode, image_request, jpeg, output, photo, spec

torch = pytest.importorskip("torch")

from packserve.backends.image import crop_regions, parse_plan  # noqa: E402
from packserve.backends.image.cpu_ops import normalization_table, render  # noqa: E402
from packserve.backends.image.decode import apply_orientation  # noqa: E402
from packserve.backends.image.geometry import transform_for  # noqa: E402
from packserve.backends.image.gpu import (  # noqa: E402
    GpuImageInstance,
    crop_regions_torch,
    orient_chw,
    render_torch,
)
from packserve.backends.image.model import CpuImageInstance  # noqa: E402
from packserve.errors import InvalidArgumentError  # noqa: E402
from packserve.types import DataType  # noqa: E402

PIXELS = photo(300, 200, seed=5)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_cpu(orientation: int) -> None:
    chw = torch.from_numpy(PIXELS).permute(2, 0, 1)
    upright = orient_chw(chw, orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(upright, apply_orientation(PIXELS, orientation))


@pytest.mark.parametrize(
    ("op", "dims", "extra"),
    [
        ("letterbox", (3, 256, 256), {}),
        ("letterbox", (3, 640, 640), {"align": "top_left", "pad_value": "0"}),
        ("resize", (3, 100, 120), {"interpolation": "cubic"}),
        ("center_crop", (3, 128, 128), {}),
        ("shorter_side", (3, 512, 512), {"shorter": "400"}),
        ("center_crop", (3, 64, 64), {"interpolation": "linear_antialias", "stretch": "true"}),
        ("letterbox", (3, 96, 96), {"interpolation": "linear_antialias", "allow_upscale": "false"}),
        ("letterbox", (160, 160, 3), {"layout": "NHWC", "color": "BGR", "mean": "0.4,0.5,0.6", "std": "0.2"}),
    ],
)
def test_torch_render_matches_opencv(op: str, dims: tuple[int, ...], extra: dict[str, str]) -> None:
    parameters = {"OUT.op": op} | {f"OUT.{k}": v for k, v in extra.items()}
    pipeline = parse_plan(spec([output("OUT", DataType.FP32, dims)], parameters)).pipelines[0]
    transform = transform_for(pipeline, 300, 200)
    assert pipeline.normalization is not None
    expected = np.empty(dims, np.float32)
    render(
        PIXELS,
        transform,
        pipeline,
        normalization_table(pipeline.normalization, np.dtype(np.float32)),
        expected,
    )
    gain, bias = (torch.tensor(v, dtype=torch.float32) for v in pipeline.normalization.gain_and_bias())
    got = render_torch(torch.from_numpy(PIXELS).permute(2, 0, 1), transform, pipeline, gain, bias)
    assert tuple(got.shape) == dims and got.dtype == torch.float32
    levels = np.abs(got.numpy() - expected) / max(abs(g) for g in gain.tolist())
    assert levels.max() <= 1.01 and levels.mean() <= 0.2  # rounding: ~10% of pixels one level apart


def test_gpu_instance_on_cpu_device_matches_the_cpu_instance() -> None:
    model_spec = spec(
        [
            output("DET", DataType.FP16, (3, 320, 320)),
            output("DET_meta", DataType.FP32, (6,)),
            output("RAW", DataType.UINT8, (240, 320, 3)),
        ],
        {"DET.op": "letterbox", "RAW.op": "decoded"},
    )
    plan = parse_plan(model_spec)
    requests = [image_request(jpeg(640, 480), encode(PIXELS, "PNG")), image_request(b"junk")]
    gpu = GpuImageInstance(plan, "cpu").execute(requests, RecordingTimer())
    cpu = CpuImageInstance(plan).execute(requests, RecordingTimer())
    assert isinstance(gpu[1], InvalidArgumentError) and isinstance(cpu[1], InvalidArgumentError)
    assert str(gpu[1]) == str(cpu[1])
    got, expected = gpu[0], cpu[0]
    assert isinstance(got, dict) and isinstance(expected, dict)
    assert isinstance(got["DET"], torch.Tensor) and got["DET"].dtype == torch.float16
    np.testing.assert_array_equal(got["DET_meta"], expected["DET_meta"])
    assert np.abs(got["DET"].float().numpy() - expected["DET"].astype(np.float32)).max() <= 1.01 / 255 + 1e-3
    assert np.abs(got["RAW"].numpy().astype(int) - expected["RAW"]).max() <= 1


def test_torch_crops_match_opencv_crops() -> None:
    boxes = np.array([[10, 20, 90, 60], [-10, -10, 30, 30], [50.5, 40.25, 250.75, 190.5]], dtype=np.float32)
    quads = np.array(
        [[10, 40, 10, 20, 50, 20, 50, 40], [100, 100, 180, 80, 190, 120, 110, 140]], dtype=np.float32
    )
    image = torch.from_numpy(PIXELS).permute(2, 0, 1)
    for regions in (boxes, quads):
        expected = crop_regions(PIXELS, regions, (48, 24), pad_value=9).astype(int)
        got = crop_regions_torch(image, regions, (48, 24), pad_value=9).permute(0, 2, 3, 1).numpy()
        # OpenCV warps quantize sample positions to 1/32 pixel: a few levels on steep edges.
        assert np.abs(got - expected).max() <= 4 and np.abs(got - expected).mean() <= 0.2
    assert tuple(crop_regions_torch(image, np.zeros((0, 4)), (8, 8)).shape) == (0, 3, 8, 8)


def test_gpu_crop_mode_on_cpu_device() -> None:
    inputs = [output("IMAGE", DataType.UINT8, (-1, -1, 3)), output("BOXES", DataType.FP32, (-1, 4))]
    plan = parse_plan(
        spec([output("CROPS", DataType.FP32, (-1, 3, 16, 16))], {"mode": "crop_boxes"}, inputs=inputs)
    )
    from packserve.messages import InferRequest

    request = InferRequest(
        "crops", {"IMAGE": PIXELS[None], "BOXES": np.array([[[0, 0, 16, 16]]], np.float32)}
    )
    out = GpuImageInstance(plan, "cpu").execute([request], RecordingTimer())[0]
    assert isinstance(out, dict) and tuple(out["CROPS"].shape) == (1, 1, 3, 16, 16)
    np.testing.assert_allclose(
        out["CROPS"][0, 0].numpy(), PIXELS[:16, :16].transpose(2, 0, 1) / 255.0, atol=1e-6
    )
