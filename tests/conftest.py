"""Shared fixtures: a small, real Fashion-MNIST data set in the dog-breed layout."""
import os
from pathlib import Path

import pytest

from byoc import fashion_mnist

IDX_DIR = Path(os.environ.get("FASHION_MNIST_IDX", fashion_mnist.DEBIAN_IDX_DIR))


@pytest.fixture(scope="session")
def idx_dir() -> Path:
    if not (IDX_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST IDX files not found in {IDX_DIR}: run `make fashion-mnist-idx` "
                    "or set FASHION_MNIST_IDX")
    return IDX_DIR


@pytest.fixture(scope="session")
def small_data(idx_dir, tmp_path_factory) -> Path:
    """500 training, 30 validation and 30 test images per class."""
    out = tmp_path_factory.mktemp("data") / "fashion-mnist"
    fashion_mnist.convert(idx_dir, out, valid_per_class=30, train_per_class=500, test_per_class=30)
    return out
