"""Model architectures, built by name so a model package can name its own (byoc.contract.ARCHITECTURES)."""
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from byoc import contract


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def small_cnn(num_classes: int, width: int = 32, dropout: float = 0.2) -> nn.Module:
    """A four-layer CNN for small images (28-64 px); trains in minutes on a CPU."""
    return nn.Sequential(
        _conv_bn_relu(3, width),
        nn.MaxPool2d(2),  # downsample early: most of the compute is in the first blocks
        _conv_bn_relu(width, 2 * width),
        nn.MaxPool2d(2),
        _conv_bn_relu(2 * width, 4 * width),
        _conv_bn_relu(4 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(4 * width, num_classes),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(channels, channels), _conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet_small(num_classes: int, width: int = 32) -> nn.Module:
    """A ResNet-9-style network (three stages, two residual blocks) for quick runs at 28-64 px."""
    return nn.Sequential(
        _conv_bn_relu(3, width),
        _conv_bn_relu(width, 2 * width), nn.MaxPool2d(2), _Residual(2 * width),
        _conv_bn_relu(2 * width, 4 * width), nn.MaxPool2d(2),
        _conv_bn_relu(4 * width, 8 * width), nn.MaxPool2d(2), _Residual(8 * width),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * width, num_classes),
    )


class _WideBasic(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv, dropout, BN-ReLU-conv, plus the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(self.dropout(out))))
        return out + shortcut


def wide_resnet(num_classes: int, depth: int = 28, widen: int = 10, dropout: float = 0.3) -> nn.Module:
    """WideResNet-depth-widen (Zagoruyko & Komodakis, 2016) for 32 px inputs; 28-10 has 36.5 M weights."""
    if (depth - 4) % 6:
        raise ValueError("WideResNet depth must be 6n + 4 (e.g. 16, 22, 28, 40)")
    blocks = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1, bias=False)]
    for stage in range(3):
        for block in range(blocks):
            c_in = widths[stage] if block == 0 else widths[stage + 1]
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(_WideBasic(c_in, widths[stage + 1], stride, dropout))
    layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(widths[3], num_classes)]
    return nn.Sequential(*layers)


def resnet50(num_classes: int) -> nn.Module:
    """torchvision's ResNet-50 with a new classifier head; pretrained weights come from a file."""
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": small_cnn,
    "resnet_small": resnet_small,
    "wrn28_10": wide_resnet,
    "resnet50": resnet50,
}
assert tuple(ARCHITECTURES) == contract.ARCHITECTURES, "byoc.contract.ARCHITECTURES names what this module builds"
# The final classifier of each architecture: replaced when fine-tuning, trained while the rest is frozen.
HEADS = {"resnet50": "fc."}


def build_model(architecture: str, num_classes: int, **kwargs) -> nn.Module:
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from None
    return factory(num_classes, **kwargs)
