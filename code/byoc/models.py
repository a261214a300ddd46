"""Model architectures, built by name so a model package can name its own."""
from collections.abc import Callable

from torch import nn


def small_cnn(num_classes: int, width: int = 32, dropout: float = 0.2) -> nn.Module:
    """A three-block CNN for small images (28-64 px); trains in minutes on a CPU."""

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    return nn.Sequential(
        block(3, width),
        nn.MaxPool2d(2),  # downsample early: most of the compute is in the first blocks
        block(width, 2 * width),
        nn.MaxPool2d(2),
        block(2 * width, 4 * width),
        block(4 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(4 * width, num_classes),
    )


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": small_cnn,
}


def build_model(architecture: str, num_classes: int, **kwargs) -> nn.Module:
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from None
    return factory(num_classes, **kwargs)
