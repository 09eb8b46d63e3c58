"""Resident memory of 1 vs N instances of one ResNet-sized ONNX model (onnxruntime backend).

    .venv/bin/python bench/instance_memory.py [--instances 4] [--params-millions 25]

Builds a ~25M-parameter FP32 ONNX graph (a conv stem and three Gemm layers, random weights), then,
in a fresh subprocess per measurement (so one run's allocator state cannot flatter the other), loads
it through OnnxRuntimeModel, creates the instances, runs one inference on each, and reads the
process RSS. Instances share one InferenceSession, so N instances should cost about what one does;
the script fails (exit 1) when the ratio reaches 1.3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MAX_RATIO = 1.3
IMAGE = (3, 32, 32)
STEM_CHANNELS = 16


def build_model(path: Path, params_millions: float) -> int:
    """Write the graph to `path`; return its parameter count."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    flat = STEM_CHANNELS * IMAGE[1] * IMAGE[2]  # 16384
    # Two hidden widths chosen so the Gemm weights add up to about params_millions.
    hidden = max(64, int(params_millions * 1e6 / (flat + 1024 + 10)))
    shapes = {
        "conv_w": (STEM_CHANNELS, IMAGE[0], 3, 3),
        "fc1_w": (flat, hidden),
        "fc2_w": (hidden, 1024),
        "fc3_w": (1024, 10),
    }
    weights = {name: (rng.standard_normal(shape) * 0.01).astype(np.float32) for name, shape in shapes.items()}
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["INPUT", "conv_w"], ["stem"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["stem"], ["stem_relu"]),
            helper.make_node("Flatten", ["stem_relu"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "fc1_w"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h1_relu"]),
            helper.make_node("Gemm", ["h1_relu", "fc2_w"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["h2_relu"]),
            helper.make_node("Gemm", ["h2_relu", "fc3_w"], ["OUTPUT"]),
        ],
        "resnet_sized",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", *IMAGE])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return sum(value.size for value in weights.values())


def measure(model_dir: Path, instances: int) -> dict[str, float]:
    """Runs in the child process: load, create instances, infer once each, report RSS in MiB."""
    import psutil

    from packserve.backends.base import ExecutionTimer, InstanceContext, ModelContext
    from packserve.backends.onnxruntime import OnnxRuntimeModel
    from packserve.backends.registry import load_backend
    from packserve.config.normalize import normalize_config
    from packserve.config.parse import parse_config_text
    from packserve.config.to_spec import build_model_spec
    from packserve.messages import InferRequest

    class NoTimer(ExecutionTimer):
        def inputs_ready(self) -> None:
            pass

        def infer_done(self) -> None:
            pass

    process = psutil.Process()
    baseline = process.memory_info().rss
    config = normalize_config(
        parse_config_text(""), model_dir, model_dir / "1", available_gpus=(), backends=load_backend
    )
    context = ModelContext(
        spec=build_model_spec(config, model_dir),
        config=config,
        repository=model_dir.parent,
        model_dir=model_dir,
        version=1,
        version_dir=model_dir / "1",
    )
    model = OnnxRuntimeModel(context)
    handles = [
        model.create_instance(InstanceContext(name=f"{model_dir.name}_0_{i}", kind="KIND_CPU", device_id=0))
        for i in range(instances)
    ]
    image = np.random.default_rng(1).random((1, *IMAGE), dtype=np.float32)
    for handle in handles:
        handle.execute([InferRequest(model_name=model_dir.name, inputs={"INPUT": image})], NoTimer())
    rss = process.memory_info().rss
    return {"instances": instances, "rss_mib": rss / 2**20, "model_mib": (rss - baseline) / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--params-millions", type=float, default=25.0)
    parser.add_argument("--child", nargs=2, metavar=("MODEL_DIR", "INSTANCES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), int(args.child[1]))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "resnet_sized"
        params = build_model(model_dir / "1" / "model.onnx", args.params_millions)
        print(f"model: {params / 1e6:.1f}M FP32 parameters ({params * 4 / 2**20:.0f} MiB of weights)")
        results = []
        for count in (1, args.instances):
            output = subprocess.run(
                [sys.executable, __file__, "--child", str(model_dir), str(count)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
            print(
                f"{count} instance(s): RSS {results[-1]['rss_mib']:.0f} MiB "
                f"(model {results[-1]['model_mib']:.0f} MiB)"
            )
    ratio = results[1]["rss_mib"] / results[0]["rss_mib"]
    print(f"RSS ratio {args.instances} vs 1 instance: {ratio:.2f} (limit {MAX_RATIO})")
    return 0 if ratio < MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
