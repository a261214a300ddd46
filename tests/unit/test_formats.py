import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from byoc.contract import Preprocessing
from byoc.training import data, formats
from byoc.training.errors import DataError


@pytest.fixture
def cifar_dir(tmp_path):
    """Files laid out and encoded as in the official cifar-100-python archive, with 6 images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 3, 32, 32), dtype=np.uint8)
    images[0, 0] = 255  # first image: a saturated red plane
    for name, count in (("train", 4), ("test", 2)):
        batch = {b"data": images[:count].reshape(count, 3072), b"fine_labels": [0, 1, 2, 1][:count],
                 b"filenames": [b"x.png"] * count}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=4))  # native bytes, as in the py2 archive
    (tmp_path / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"apple", b"aquarium_fish", b"baby"]}))
    return tmp_path


def test_cifar100_files_are_read_with_fine_labels_in_hwc_layout(cifar_dir):
    splits = data.load_splits({"train": cifar_dir, "test": cifar_dir}, Preprocessing(32, 32))
    train, test = splits["train"], splits["test"]
    assert formats.detect(cifar_dir) == "cifar100"
    assert train.classes == ["apple", "aquarium_fish", "baby"] and train.targets == [0, 1, 2, 1]
    image, label = train[0]
    assert image.shape == (32, 32, 3) and (image[..., 0] == 255).all() and label == 0
    assert len(test) == 2 and test[0][0].shape == (3, 32, 32)  # eval-transformed


def test_a_crafted_cifar_file_cannot_run_code(cifar_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (cifar_dir / "train").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match="posix.system is not allowed|os.system is not allowed"):
        data.load_splits({"train": cifar_dir}, Preprocessing(32, 32))
    assert not marker.exists()


def test_cifar_channel_without_its_split_file_is_explained(cifar_dir):
    (cifar_dir / "test").unlink()
    with pytest.raises(DataError, match="'test' channel .* no 'test' file"):
        data.load_splits({"train": cifar_dir, "test": cifar_dir}, Preprocessing(32, 32))


def test_fashion_mnist_idx_files_are_a_channel_format(idx_dir):
    splits = data.load_splits({"train": idx_dir, "valid": idx_dir}, Preprocessing(28, 28))
    assert formats.detect(idx_dir) == "idx"
    assert len(splits["train"]) == 60_000 and len(splits["valid"]) == 10_000
    assert splits["train"].classes[0] == "001.T-shirt_top"
    image, label = splits["train"][0]
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8 and 0 <= label < 10


@pytest.mark.parametrize("name, content, reason", [
    ("meta", [b"apple"], "meta is not a CIFAR-100 python file: it holds a pickled list"),
    ("train", 7, "train is not a CIFAR-100 python file: it holds a pickled int"),
    ("train", {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [-1]}, "has labels -1 outside the 3 classes"),
    ("train", {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [3]}, "has labels 3 outside the 3 classes"),
    ("train", {b"data": [[1, 2]], b"fine_labels": {}}, "lacks the CIFAR-100 fields"),
])
def test_broken_cifar_files_are_data_errors_when_read(cifar_dir, name, content, reason):
    (cifar_dir / name).write_bytes(pickle.dumps(content))
    with pytest.raises(DataError, match=reason):
        data.load_splits({"train": cifar_dir}, Preprocessing(32, 32))


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(folder, images: np.ndarray, labels: np.ndarray) -> None:
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def test_small_idx_files_are_read(tmp_path):
    write_idx(tmp_path, np.full((3, 4, 5), 7, np.uint8), np.array([0, 9, 3], np.uint8))
    train = data.load_splits({"train": tmp_path}, Preprocessing(28, 28))["train"]
    assert train.images.shape == (3, 4, 5, 3) and train.targets == [0, 9, 3]


@pytest.mark.parametrize("breakage, reason", [
    ("truncated gzip", "cannot be read: Compressed file ended"),
    ("empty file", "cannot be read"),
    ("label out of range", "has labels 42 outside the 10 classes"),
    ("images of no pixels", r"holds \(3, 0, 0\) .*at least 1x1 pixel"),
])
def test_broken_idx_files_are_data_errors_when_read(tmp_path, breakage, reason):
    images, labels = np.zeros((3, 4, 4), np.uint8), np.array([0, 1, 2], np.uint8)
    if breakage == "label out of range":
        labels[1] = 42
    if breakage == "images of no pixels":
        images = np.zeros((3, 0, 0), np.uint8)
    write_idx(tmp_path, images, labels)
    packed = tmp_path / "train-images-idx3-ubyte.gz"
    if breakage == "truncated gzip":
        packed.write_bytes(packed.read_bytes()[:-12])
    if breakage == "empty file":
        packed.write_bytes(b"")
    with pytest.raises(DataError, match=reason) as error:
        data.load_splits({"train": tmp_path}, Preprocessing(28, 28))
    assert "\n" not in str(error.value)
