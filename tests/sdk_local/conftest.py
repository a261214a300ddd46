"""Fixtures for the SageMaker SDK local-mode tests: the engine check, each test's own folder
and port, and cleanup of everything the SDK starts, also when a test fails."""
import docker
import pytest

from sdk_harness import OutboundRecorder, compose_for_sdk_v2, free_port, remove_sdk_containers, sdk_environment
from support import docker_with_images

SDK_NETWORK = "sagemaker-local"  # the one network both SDKs' compose files name


@pytest.fixture(scope="session")
def sdk_docker():
    client = docker_with_images()
    problem = compose_for_sdk_v2()
    if problem:
        pytest.fail(f"SageMaker SDK v2 local mode needs docker compose: {problem}")
    yield client
    try:  # the SDKs leave their network behind; it goes once no container uses it
        client.networks.get(SDK_NETWORK).remove()
    except docker.errors.APIError:
        pass


@pytest.fixture
def sdk_root(sdk_docker, tmp_path):
    """The test's folder for the SDK's files; every container started from a compose file under
    it is removed afterwards."""
    root = tmp_path / "sdk"
    root.mkdir()
    yield root
    remove_sdk_containers(sdk_docker, root)


@pytest.fixture
def outbound():
    """Records any HTTP(S) request the SDK tries to send off this machine (its proxy)."""
    recorder = OutboundRecorder(free_port()).start()
    yield recorder
    recorder.stop()


@pytest.fixture
def sdk_env(tmp_path, outbound):
    return sdk_environment(tmp_path / "home", outbound.port)


@pytest.fixture
def serving_port(outbound):
    return free_port(taken={outbound.port})
