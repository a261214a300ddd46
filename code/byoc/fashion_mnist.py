"""Turn Fashion-MNIST's IDX files into the dog-breed project's folder layout.

    OUT/train/001.T-shirt_top/00000.png ... OUT/valid/... OUT/test/...

so one image-folder loader serves both. The validation split is a fixed,
class-balanced slice of the official training set; the test split is the
official t10k set.
"""
import argparse
import gzip
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from byoc import contract

DEBIAN_IDX_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = [
    "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot",
]  # fmt: skip
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def class_folder(label: int) -> str:
    return contract.class_folder(label, CLASS_NAMES[label])


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as a uint8 array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {array.size} bytes for shape {shape}: truncated?")
    return array.reshape(shape)


def load_split(idx_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_file, labels_file = IDX_FILES[split]
    images, labels = read_idx(idx_dir / images_file), read_idx(idx_dir / labels_file)
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def take_per_class(labels: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most `per_class` random examples of each class, in index order."""
    chosen = []
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        if per_class is not None and per_class < len(indices):
            indices = rng.choice(indices, per_class, replace=False)
        chosen.append(indices)
    return np.sort(np.concatenate(chosen))


def write_folder(out: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
    for label in np.unique(labels[indices]):
        (out / class_folder(int(label))).mkdir(parents=True, exist_ok=True)
    for i in indices:
        Image.fromarray(images[i], mode="L").save(out / class_folder(int(labels[i])) / f"{i:05d}.png")


def convert(
    idx_dir: Path,
    out: Path,
    valid_per_class: int = 500,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    train_images, train_labels = load_split(idx_dir, "train")
    test_images, test_labels = load_split(idx_dir, "test")

    valid_idx = take_per_class(train_labels, valid_per_class, rng)
    rest = np.setdiff1d(np.arange(len(train_labels)), valid_idx)
    train_idx = rest[take_per_class(train_labels[rest], train_per_class, rng)]
    test_idx = take_per_class(test_labels, test_per_class, rng)

    write_folder(out / "train", train_images, train_labels, train_idx)
    write_folder(out / "valid", train_images, train_labels, valid_idx)
    write_folder(out / "test", test_images, test_labels, test_idx)
    return {"train": len(train_idx), "valid": len(valid_idx), "test": len(test_idx)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR,
                        help="folder with the four *-ubyte.gz files (default: Debian's dataset-fashion-mnist)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist yet)")
    parser.add_argument("--valid-per-class", type=int, default=500)
    parser.add_argument("--train-per-class", type=int, help="cap on training images per class (default: all)")
    parser.add_argument("--test-per-class", type=int, help="cap on test images per class (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    missing = [name for pair in IDX_FILES.values() for name in pair if not (args.idx_dir / name).is_file()]
    if missing:
        print(f"byoc-data: {args.idx_dir} lacks {', '.join(missing)}; on Debian install the "
              "dataset-fashion-mnist package, elsewhere pass --idx-dir", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"byoc-data: {args.out} exists already; remove it to convert again", file=sys.stderr)
        return 2
    partial = args.out.with_name(args.out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    counts = convert(args.idx_dir, partial, args.valid_per_class, args.train_per_class, args.test_per_class, args.seed)
    partial.rename(args.out)  # a finished folder or none: an interrupted run leaves no half data set
    print(f"byoc-data: wrote {counts} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
