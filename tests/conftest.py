"""Shared fixtures: a small, real Fashion-MNIST data set in the dog-breed layout; the endpoint
Lambda pointed at a SageMaker runtime."""
import os
from pathlib import Path

import pytest

from byoc import fashion_mnist
from byoc_cloud import endpoint_lambda

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


@pytest.fixture
def point_lambda(monkeypatch):
    """point_lambda(endpoint, runtime_url, allow_private_urls): the endpoint Lambda's environment,
    with stand-in credentials and a fresh runtime client."""
    def point(endpoint: str, runtime_url: str, allow_private_urls: bool) -> None:
        monkeypatch.setenv("ENDPOINT_NAME", endpoint)
        if allow_private_urls:
            monkeypatch.setenv("ALLOW_PRIVATE_URLS", "1")
        else:
            monkeypatch.delenv("ALLOW_PRIVATE_URLS", raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime_url)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setattr(endpoint_lambda, "_runtime", None)
    return point
