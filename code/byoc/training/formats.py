"""Data-set formats a channel may hold besides class folders, read into memory.

- CIFAR-100, python version: the official archive's `train`, `test` and `meta`
  files (fine labels). The train channel reads `train`; valid and test read `test`.
- Fashion-MNIST IDX: `train-*-ubyte[.gz]` for the train channel, `t10k-*` otherwise.

The CIFAR files are pickles. They are read with an unpickler that admits numpy
arrays and nothing else, so a crafted file in a channel cannot run code.
"""
import pickle
import struct
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from byoc import contract, fashion_mnist
from byoc.training.errors import DataError

CIFAR_FILES = {"train": "train", "valid": "test", "test": "test"}


def detect(path: Path) -> str:
    if (path / "meta").is_file() and ((path / "train").is_file() or (path / "test").is_file()):
        return "cifar100"
    if any(path.glob("*-idx3-ubyte*")):
        return "idx"
    return "folders"


class ArrayImages(Dataset):
    """Images held as one uint8 (N, H, W, 3) array, with the interface ClassFolders offers."""

    def __init__(self, images: np.ndarray, targets: list[int], classes: list[str], transform, root: Path):
        self.images, self.targets, self.classes = images, targets, classes
        self.transform, self.root = transform, str(root)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.targets[index]

    def scan(self, budget, *_args) -> None:
        """Already decoded and checked when read; the pixels count against the decode budget."""
        budget.spend(self.images.nbytes)

    def memory_bytes(self) -> int:
        return self.images.nbytes


class _ArraysOnly(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-100 file")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = _ArraysOnly(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DataError(f"{path} is not a CIFAR-100 python file: {error}") from None
    if not isinstance(content, dict):
        raise DataError(f"{path} is not a CIFAR-100 python file: it holds a pickled {type(content).__name__}, "
                        "not the dict of the official archive.")
    return content


def check_labels(targets, classes: list[str], where: Path) -> None:
    """Every label indexes a class: one outside would stop training mid-epoch with an IndexError."""
    outside = sorted({label for label in targets if not 0 <= label < len(classes)})
    if outside:
        raise DataError(f"{where} has labels {', '.join(map(str, outside[:5]))} outside the {len(classes)} "
                        f"classes (0 to {len(classes) - 1}).")


def read_cifar100(path: Path, split: str, transform) -> ArrayImages:
    meta, file = _unpickle(path / "meta"), path / CIFAR_FILES[split]
    if not file.is_file():
        raise DataError(f"The '{split}' channel {path} holds CIFAR-100 files but no '{file.name}' file.")
    batch = _unpickle(file)
    try:
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        targets = [int(label) for label in batch[b"fine_labels"]]
        classes = [name.decode() for name in meta[b"fine_label_names"]]
    except (KeyError, ValueError, AttributeError, TypeError) as error:
        raise DataError(f"{file} lacks the CIFAR-100 fields data/fine_labels/fine_label_names: {error}") from None
    if len(targets) != len(images):
        raise DataError(f"{file}: {len(images)} images but {len(targets)} labels")
    check_labels(targets, classes, file)
    return ArrayImages(np.ascontiguousarray(images), targets, classes, transform, path)


def read_idx(path: Path, split: str, transform) -> ArrayImages:
    prefix = "train" if split == "train" else "t10k"
    found = {kind: next((p for p in path.glob(f"{prefix}-{kind}-*-ubyte*") if p.is_file()), None)  # no FIFOs
             for kind in ("images", "labels")}
    if None in found.values():
        raise DataError(f"The '{split}' channel {path} holds IDX files but not {prefix}-images/labels-*-ubyte.")
    try:
        images, labels = fashion_mnist.read_idx(found["images"]), fashion_mnist.read_idx(found["labels"])
    except (ValueError, OSError, EOFError, struct.error) as error:  # bad header, truncated gzip, empty file
        raise DataError(f"The IDX files in {path} cannot be read: {error or type(error).__name__}. Copy them "
                        "again (a truncated or empty file?).") from None
    if images.ndim != 3 or 0 in images.shape[1:] or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{found['images']} holds {images.shape} and {found['labels'].name} {labels.shape}: "
                        "expected (N, H, W) grey images of at least 1x1 pixel and N labels")
    classes = [contract.class_folder(i, name) for i, name in enumerate(fashion_mnist.CLASS_NAMES)]
    check_labels(labels.tolist(), classes, found["labels"])
    rgb = np.repeat(images[..., None], 3, axis=3)
    return ArrayImages(rgb, labels.astype(int).tolist(), classes, transform, path)


READERS = {"cifar100": read_cifar100, "idx": read_idx}
