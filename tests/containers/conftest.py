"""Fixtures for the container tests: the docker client and one shared training job."""
import pytest

from support import RUN_ID, Endpoint, TrainingRun, docker_with_images, run_training, start_serving


@pytest.fixture(scope="session")
def docker_client():
    client = docker_with_images()
    yield client
    for container in client.containers.list(all=True, filters={"label": f"byoc.test-run={RUN_ID}"}):
        container.remove(force=True)


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


@pytest.fixture(scope="session")
def endpoint(docker_client, trained) -> Endpoint:
    """The serving image on the shared model, with its default settings."""
    endpoint = start_serving(docker_client, trained.opt_ml / "model")
    yield endpoint
    endpoint.container.remove(force=True)
