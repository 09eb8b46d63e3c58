"""The three networks of the pipeline benchmark, written in torch (torchvision is not installed):
the same layer layouts as torchvision's mobilenet_v3_small, resnet18 and
lraspp_mobilenet_v3_large (dilated MobileNetV3-Large backbone, LR-ASPP head, 21 classes), random
weights, exported once to ONNX with a dynamic batch dimension and cached.

Each graph ends in its own top-1: the classifiers' class index [N, 1]; the segmenter's class with
the highest mean score over the full-resolution mask [N, 1] (the mask is still computed and
upsampled to 320x320, so the cost is the segmenter's).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

CLASSIFIER_SIZE = 224
SEGMENTER_SIZE = 320
MODELS = {"mobilenet_v3_small": CLASSIFIER_SIZE, "resnet18": CLASSIFIER_SIZE, "lraspp": SEGMENTER_SIZE}


def _divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1,
             act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:  # fmt: skip
    pad = (k - 1) // 2 * dilation
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeeze = _divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))


class _InvertedResidual(nn.Module):
    def __init__(
        self, cin: int, k: int, exp: int, cout: int, se: bool, hs: bool, stride: int, dil: int
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_conv_bn(cin, exp, 1, act=act))
        layers.append(_conv_bn(exp, exp, k, 1 if dil > 1 else stride, groups=exp, dilation=dil, act=act))
        if se:
            layers.append(_SqueezeExcite(exp))
        layers.append(_conv_bn(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


# (kernel, expansion, out, squeeze-excite, hardswish, stride) as in torchvision.
_SMALL = [
    (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
]  # fmt: skip
_LARGE = [
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
]  # fmt: skip


def _mobilenet_features(
    table: list[tuple[int, int, int, bool, bool, int]], dilate_last: int
) -> nn.Sequential:
    layers: list[nn.Module] = [_conv_bn(3, 16, 3, 2, act=nn.Hardswish)]
    cin = 16
    for index, (k, exp, cout, se, hs, stride) in enumerate(table):
        dil = 2 if index >= len(table) - dilate_last else 1
        layers.append(_InvertedResidual(cin, k, exp, cout, se, hs, stride, dil))
        cin = cout
    layers.append(_conv_bn(cin, 6 * cin, 1, act=nn.Hardswish))
    return nn.Sequential(*layers)


class MobileNetV3Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = _mobilenet_features(_SMALL, 0)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Linear(1024, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride)
        self.conv2 = _conv_bn(cout, cout, 3, act=None)
        self.down = _conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.down is None else self.down(x)
        return F.relu(self.conv2(self.conv1(x)) + skip)


class ResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class LRASPPMobileNetV3(nn.Module):
    """Dilated MobileNetV3-Large (output stride 16) with the LR-ASPP head, 21 classes."""

    def __init__(self, classes: int = 21) -> None:
        super().__init__()
        self.features = _mobilenet_features(_LARGE, 3)
        self.low_index = 6  # stem + 6 blocks: the last 40-channel, stride-8 feature
        self.cbr = _conv_bn(960, 128, 1)
        self.scale = nn.Conv2d(960, 128, 1)
        self.low_classifier = nn.Conv2d(40, classes, 1)
        self.high_classifier = nn.Conv2d(128, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        low = self.features[: self.low_index + 1](x)
        high = self.features[self.low_index + 1 :](low)
        y = self.cbr(high) * torch.sigmoid(self.scale(F.adaptive_avg_pool2d(high, 1)))
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.low_classifier(low) + self.high_classifier(y)
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


class _TopOne(nn.Module):
    def __init__(self, net: nn.Module, segmenter: bool) -> None:
        super().__init__()
        self.net = net
        self.segmenter = segmenter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.net(x)
        if self.segmenter:
            scores = scores.mean(dim=(2, 3))
        return scores.argmax(dim=1, keepdim=True)


def build(name: str) -> nn.Module:
    net = {"mobilenet_v3_small": MobileNetV3Small, "resnet18": ResNet18, "lraspp": LRASPPMobileNetV3}[name]()
    return _TopOne(net, name == "lraspp").eval()


def export_models(cache: Path) -> dict[str, Path]:
    """ONNX file of each model, exported on first use (random weights, seed 0)."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, size in MODELS.items():
        path = cache / f"{name}.onnx"
        if not path.is_file():
            torch.manual_seed(0)
            model = build(name)
            example = torch.zeros(2, 3, size, size)
            partial = path.with_suffix(".partial")
            with torch.no_grad():
                torch.onnx.export(
                    model, (example,), str(partial), input_names=["INPUT"], output_names=["TOP1"],
                    dynamic_axes={"INPUT": {0: "batch"}, "TOP1": {0: "batch"}}, opset_version=17,
                    dynamo=False,
                )  # fmt: skip
            partial.rename(path)
        paths[name] = path
    return paths
