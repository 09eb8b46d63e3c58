"""The model repositories the GPU check serves: one packed, and one per model for the per-process layout.

Packed (`pack`): an `image` model (decode + letterbox + normalize; KIND_GPU on a GPU, so pixels
stay in GPU memory) feeding the seven classifiers of nets.py (pytorch backend, dynamic batching,
one instance each on the device), joined by one ensemble `pack`: one JPEG in, seven score
vectors out. Per-process (`solo_<model>`): what the seed ran before packing, one model per
server process, its image preprocessing on the CPU in front of it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.gpu_check.nets import NETS, build


@dataclass(frozen=True)
class Shape:
    size: int  # square model input
    width: float  # channel multiplier of every net
    classes: int
    max_batch: int
    queue_delay_us: int
    budget: str  # gpu_memory_budget of every net in the packed repository


FULL = Shape(size=224, width=1.0, classes=1000, max_batch=32, queue_delay_us=500, budget="2GiB")
QUICK = Shape(size=64, width=0.25, classes=10, max_batch=4, queue_delay_us=500, budget="256MiB")
PREPROCESS = "preprocess"
ENSEMBLE = "pack"


def _kind(device: str) -> str:
    return "KIND_GPU" if device.startswith("cuda") else "KIND_CPU"


def _gpus(device: str) -> str:
    return f" gpus: [ {device.split(':')[1]} ]" if device.startswith("cuda") else ""


def preprocess_config(name: str, shape: Shape, kind: str, gpus: str, threads: int, instances: int) -> str:
    return f"""name: "{name}"
backend: "image"
max_batch_size: {shape.max_batch}
input [ {{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "PIXELS" data_type: TYPE_FP32 dims: [ 3, {shape.size}, {shape.size} ] }} ]
parameters {{ key: "PIXELS.op" value {{ string_value: "letterbox" }} }}
parameters {{ key: "threads" value {{ string_value: "{threads}" }} }}
dynamic_batching {{ max_queue_delay_microseconds: {shape.queue_delay_us} }}
instance_group [ {{ count: {instances} kind: {kind}{gpus} }} ]
"""


def net_config(name: str, shape: Shape, kind: str, gpus: str, budget: str | None = None) -> str:
    budget_line = (
        f'parameters {{ key: "gpu_memory_budget" value {{ string_value: "{budget}" }} }}\n' if budget else ""
    )
    return f"""name: "{name}"
platform: "pytorch_libtorch"
max_batch_size: {shape.max_batch}
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, {shape.size}, {shape.size} ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ {shape.classes} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: {shape.queue_delay_us} }}
instance_group [ {{ count: 1 kind: {kind}{gpus} }} ]
{budget_line}"""


def ensemble_config(name: str, shape: Shape, preprocess: str, nets: list[str]) -> str:
    outputs = "\n".join(
        f'  {{ name: "{net.upper()}" data_type: TYPE_FP32 dims: [ {shape.classes} ] }},' for net in nets
    ).rstrip(",")
    steps = "\n".join(
        f'    {{ model_name: "{net}" model_version: -1 input_map {{ key: "INPUT__0" value: "pixels" }} '
        f'output_map {{ key: "OUTPUT__0" value: "{net.upper()}" }} }},'
        for net in nets
    ).rstrip(",")
    return f"""name: "{name}"
platform: "ensemble"
max_batch_size: {shape.max_batch}
input [ {{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [
{outputs}
]
ensemble_scheduling {{
  step [
    {{ model_name: "{preprocess}" model_version: -1
      input_map {{ key: "IMAGE" value: "IMAGE" }} output_map {{ key: "PIXELS" value: "pixels" }} }},
{steps}
  ]
}}
"""


def _write(folder: Path, config: str) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config, encoding="utf-8")


def build_nets(folder: Path, shape: Shape) -> dict[str, int]:
    """TorchScript files of the seven nets under folder/<net>.pt; their parameter counts."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        net: build(net, shape.width, shape.classes, shape.size, str(folder / f"{net}.pt")) for net in NETS
    }


def write_packed(root: Path, nets_dir: Path, shape: Shape, device: str, preprocess_instances: int) -> Path:
    repository = root / "packed"
    kind, gpus = _kind(device), _gpus(device)
    _write(repository / PREPROCESS, preprocess_config(PREPROCESS, shape, kind, gpus, 4, preprocess_instances))
    for net in NETS:
        _write(repository / net, net_config(net, shape, kind, gpus, shape.budget))
        shutil.copy(nets_dir / f"{net}.pt", repository / net / "1" / "model.pt")
    _write(repository / ENSEMBLE, ensemble_config(ENSEMBLE, shape, PREPROCESS, list(NETS)))
    return repository


def write_solo(root: Path, nets_dir: Path, shape: Shape, device: str, net: str, cpu_threads: int) -> Path:
    """One process's repository: CPU preprocessing in front of one net on the device."""
    repository = root / f"solo_{net}"
    pre = f"{PREPROCESS}_cpu"
    _write(repository / pre, preprocess_config(pre, shape, "KIND_CPU", "", cpu_threads, 1))
    _write(repository / net, net_config(net, shape, _kind(device), _gpus(device)))
    shutil.copy(nets_dir / f"{net}.pt", repository / net / "1" / "model.pt")
    _write(repository / ENSEMBLE, ensemble_config(ENSEMBLE, shape, pre, [net]))
    return repository
