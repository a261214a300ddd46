"""Pictures of a finished job for /opt/ml/output/data (SageMaker uploads it as output.tar.gz)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in a training container
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def training_curves(history: list[dict], path: Path) -> None:
    epochs = [record["epoch"] for record in history]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "valid"):
        if f"{split}_loss" in history[0]:
            loss_axes.plot(epochs, [r[f"{split}_loss"] for r in history], marker="o", label=split)
            acc_axes.plot(epochs, [r[f"{split}_acc"] for r in history], marker="o", label=split)
    for axes, name in ((loss_axes, "loss"), (acc_axes, "accuracy")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def confusion_matrix(confusion: np.ndarray, class_names: list[str], path: Path) -> None:
    """Rows: true class, normalised to 1; numbers written in only when there are few classes."""
    confusion = np.asarray(confusion, dtype=float)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    side = min(4 + 0.35 * n, 40)
    figure, axes = plt.subplots(figsize=(side, side))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(n), class_names, rotation=90, fontsize=8 if n <= 30 else 4)
    axes.set_yticks(range(n), class_names, fontsize=8 if n <= 30 else 4)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                axes.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if rates[i, j] > 0.5 else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
