"""Seven small vision classifiers, one per common family, built here with random weights.

Why these and why built here: the seed packs 4-7 small vision models per GPU; these seven cover
the families such fleets run (ResNet basic blocks, MobileNetV2 inverted residuals, MobileNetV3
squeeze-excite + hard-swish, ShuffleNet channel shuffle, SqueezeNet fire modules, EfficientNet
MBConv + SiLU, a plain VGG-style stack) at 0.7-12 M parameters, the size of such models. They are
written with torch.nn alone, not taken from torchvision, so the CPU dry run in CI (whose venv has
no torchvision) builds exactly the graphs the GPU run serves. Weights are random (He-scaled by
torch's defaults): throughput and memory do not depend on their values. Each is traced to
TorchScript, the format the pytorch backend loads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bench.suite.image_model import STAGES as MOBILENET_V2_STAGES


def _conv(
    cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act()
    )


def _head(channels: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, act: type[nn.Module]) -> None:
        super().__init__()
        hidden = max(8, channels // 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            act(),
            nn.Conv2d(hidden, channels, 1),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def _inverted(
    cin: int, cout: int, s: int, expand: int, act: type[nn.Module], se: bool, k: int = 3
) -> nn.Module:
    hidden = cin * expand
    layers: list[nn.Module] = [
        _conv(cin, hidden, 1, act=act),
        _conv(hidden, hidden, k, s, groups=hidden, act=act),
    ]
    if se:
        layers.append(_SqueezeExcite(hidden, act))
    layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    body = nn.Sequential(*layers)
    return _Residual(body, None) if s == 1 and cin == cout else body


def resnet(w: float, classes: int) -> nn.Module:
    c = [max(8, int(n * w)) for n in (64, 128, 256, 512)]
    layers: list[nn.Module] = [_conv(3, c[0], 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = c[0]
    for i, cout in enumerate(c):
        for j in range(2):
            s = 2 if i > 0 and j == 0 else 1
            body = nn.Sequential(
                _conv(cin, cout, 3, s), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            )
            short = (
                None
                if s == 1 and cin == cout
                else nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
            )
            layers += [_Residual(body, short), nn.ReLU()]
            cin = cout
    return nn.Sequential(*layers, _head(cin, classes))


def _mobile(
    w: float,
    classes: int,
    plan: list[tuple[int, int, int, int]],
    act: type[nn.Module],
    se: bool,
    last: int,
    k: int = 3,
) -> nn.Module:
    """plan rows: (expand, channels, repeats, first stride)."""
    cin = max(8, int(16 * w))
    layers: list[nn.Module] = [_conv(3, cin, 3, 2, act=act)]
    for expand, channels, repeats, stride in plan:
        cout = max(8, int(channels * w))
        for r in range(repeats):
            layers.append(_inverted(cin, cout, stride if r == 0 else 1, expand, act, se, k))
            cin = cout
    top = max(16, int(last * w))
    return nn.Sequential(*layers, _conv(cin, top, 1, act=act), _head(top, classes))


def mobilenet_v2(w: float, classes: int) -> nn.Module:
    # The suite's ONNX classifier has the same stage table (its channel rounding and stem differ).
    return _mobile(w, classes, list(MOBILENET_V2_STAGES), nn.ReLU6, se=False, last=1280)


def mobilenet_v3(w: float, classes: int) -> nn.Module:
    plan = [(1, 16, 1, 2), (4, 24, 2, 2), (4, 40, 3, 2), (6, 48, 2, 1), (6, 96, 3, 2)]
    return _mobile(w, classes, plan, nn.Hardswish, se=True, last=576)


def efficientnet(w: float, classes: int) -> nn.Module:
    plan = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 40, 2, 2),
        (6, 80, 3, 2),
        (6, 112, 3, 1),
        (6, 192, 4, 2),
        (6, 320, 1, 1),
    ]
    return _mobile(w, classes, plan, nn.SiLU, se=True, last=1280, k=5)


class _Shuffle(nn.Module):
    """ShuffleNetV2 unit: split channels, transform one half, concatenate, shuffle."""

    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = s
        into = cin if s == 2 else cin // 2
        self.branch = nn.Sequential(
            _conv(into, half, 1),
            nn.Conv2d(half, half, 3, s, 1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            _conv(half, half, 1),
        )
        self.side = (
            nn.Sequential(
                nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), _conv(cin, half, 1)
            )
            if s == 2
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, work = x.chunk(2, dim=1)
            out = torch.cat((keep, self.branch(work)), 1)
        else:
            out = torch.cat((self.side(x), self.branch(x)), 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet(w: float, classes: int) -> nn.Module:
    c = [max(8, int(n * w)) // 2 * 2 for n in (116, 232, 464)]
    cin = max(8, int(24 * w))
    layers: list[nn.Module] = [_conv(3, cin, 3, 2), nn.MaxPool2d(3, 2, 1)]
    for cout, repeats in zip(c, (4, 8, 4), strict=True):
        for r in range(repeats):
            layers.append(_Shuffle(cin, cout, 2 if r == 0 else 1))
            cin = cout
    top = max(16, int(1024 * w))
    return nn.Sequential(*layers, _conv(cin, top, 1), _head(top, classes))


class _Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, 1, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat((self.e1(s), self.e3(s)), 1)


def squeezenet(w: float, classes: int) -> nn.Module:
    def n(v: int) -> int:
        return max(4, int(v * w))

    fires = [
        (16, 64),
        (16, 64),
        (32, 128),
        "pool",
        (32, 128),
        (48, 192),
        (48, 192),
        (64, 256),
        "pool",
        (64, 256),
    ]
    cin = n(64)
    layers: list[nn.Module] = [nn.Conv2d(3, cin, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)]
    for fire in fires:
        if fire == "pool":
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            continue
        squeeze, expand = fire
        layers.append(_Fire(cin, n(squeeze), n(expand)))
        cin = 2 * n(expand)
    return nn.Sequential(
        *layers, nn.Conv2d(cin, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def vgg(w: float, classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for channels, repeats in ((32, 1), (64, 1), (128, 2), (256, 2), (256, 2)):
        cout = max(8, int(channels * w))
        for _ in range(repeats):
            layers.append(_conv(cin, cout))
            cin = cout
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, _head(cin, classes))


NETS: dict[str, Callable[[float, int], nn.Module]] = {
    "resnet18": resnet,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3": mobilenet_v3,
    "efficientnet_b0": efficientnet,
    "shufflenet_v2": shufflenet,
    "squeezenet": squeezenet,
    "vgg_small": vgg,
}


def build(name: str, width: float, classes: int, size: int, path: str) -> int:
    """Build `name`, trace it at [1, 3, size, size] and save it as TorchScript; its parameter count."""
    torch.manual_seed(len(name))
    net = NETS[name](width, classes).eval()
    with torch.inference_mode():
        traced = torch.jit.trace(net, torch.zeros(1, 3, size, size), check_trace=False)
    traced.save(path)
    return sum(p.numel() for p in net.parameters())
