"""Fixtures for the container tests: the docker client and one shared training job."""
import docker
import pytest

from harness import SERVING_IMAGE, TRAINING_IMAGE, TrainingRun, run_training


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    for image in (TRAINING_IMAGE, SERVING_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run `make build` first")
    yield client
    for container in client.containers.list(all=True, filters={"label": "byoc-test"}):
        container.remove(force=True)


@pytest.fixture(scope="session")
def trained(docker_client, small_data, tmp_path_factory) -> TrainingRun:
    """One real training job on 5,000 Fashion-MNIST images, shared by the tests that need a model."""
    run = run_training(
        docker_client, tmp_path_factory.mktemp("opt_ml"),
        {"epochs": 4, "batch_size": 64, "lr": 0.05},
        {name: small_data / name for name in ("train", "valid", "test")},
    )
    assert run.exit_code == 0, run.logs[-3000:]
    return run
