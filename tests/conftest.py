"""Shared fixtures: a small, real Fashion-MNIST data set in the dog-breed layout; the docker client
and one training job on it, shared by the container and SDK tests that need a model; the endpoint
Lambda pointed at a SageMaker runtime."""
import os
from pathlib import Path

import pytest

from byoc import fashion_mnist
from byoc_cloud import endpoint_lambda
from support import RUN_ID, TrainingRun, docker_with_images, remove_containers, run_training

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


@pytest.fixture(scope="session")
def docker_client():
    client = docker_with_images()
    yield client
    remove_containers(client, label=f"byoc.test-run={RUN_ID}")


@pytest.fixture(scope="session")
def trained(docker_client, small_data, tmp_path_factory) -> TrainingRun:
    """One real training job on 5,000 Fashion-MNIST images, shared by the tests that need a model
    (with a progress line every second and TensorBoard scalars, for the tests that watch a job)."""
    run = run_training(
        docker_client, tmp_path_factory.mktemp("opt_ml"),
        {"epochs": 4, "batch_size": 64, "lr": 0.05, "progress_seconds": 1, "tensorboard": True},
        {name: small_data / name for name in ("train", "valid", "test")},
    )
    assert run.exit_code == 0, run.logs[-3000:]
    return run


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
