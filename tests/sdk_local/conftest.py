"""Fixtures for the SageMaker SDK local-mode tests: the engine check, each test's own folder
and port, and cleanup of everything the SDK starts, also when a test fails; the serving image in
a loopback registry, for SDK v3's ModelBuilder (which pulls every image it runs)."""
import os
from pathlib import Path

import docker
import pytest

from ecr import standins
from sdk_harness import (SERVING_IMAGE, OutboundRecorder, compose_for_sdk_v2, free_port, remove_sdk_containers,
                         sdk_environment)
import support
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


@pytest.fixture(scope="session")
def pullable_serving_image(sdk_docker, tmp_path_factory):
    """SERVING_IMAGE pushed to Debian's docker-registry on loopback, as ModelBuilder names it; every
    container run by that name is removed afterwards, and no other of the same image. The first
    push takes minutes: a storage folder kept in SDK_REGISTRY_DIR makes later ones push only
    changed layers."""
    workdir = Path(os.environ["SDK_REGISTRY_DIR"]) if os.environ.get("SDK_REGISTRY_DIR") else \
        tmp_path_factory.mktemp("registry")
    port = free_port()
    process = standins.start_registry(port, workdir)
    uri = f"127.0.0.1:{port}/{SERVING_IMAGE}"
    try:
        sdk_docker.images.get(SERVING_IMAGE).tag(uri)
        for line in sdk_docker.images.push(uri, stream=True, decode=True):
            if "error" in line:
                pytest.fail(f"pushing {uri}: {line['error']}")
        yield uri
    finally:
        support.remove_all(support.created_from(sdk_docker, uri))
        sdk_docker.images.remove(uri, noprune=True)  # our tag only: SERVING_IMAGE keeps the image
        process.terminate()
        process.wait(10)
