"""Fixtures for the cloud tools: moto's server and Debian's docker-registry on loopback ports."""
import boto3
import pytest

from ecr import standins
from support import free_port


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory):
    """One moto server for the session; tests keep apart by using their own resource names."""
    port = free_port()
    process = standins.start_moto(port, tmp_path_factory.mktemp("moto") / "moto.log")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def aws_env(moto_url, monkeypatch):
    """boto3 in this process talks to moto, with fake credentials."""
    for key, value in standins.env(0, 0).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ECR_REGISTRY")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_url


@pytest.fixture
def ecr(aws_env):
    return boto3.client("ecr")


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """Debian's docker-registry on a loopback port; its storage is deleted with the session's tmp dir."""
    port = free_port()
    process = standins.start_registry(port, tmp_path_factory.mktemp("registry"))
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def moto_in_process():
    """moto's server in this process, on loopback (boto3 still talks HTTP to it), so that a test can
    move a job through its states: moto makes every job Completed at once, and its backend objects
    are the only way to say otherwise."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def live_aws(moto_in_process, aws_env, monkeypatch):
    """aws_env, but pointing at the in-process moto; returns SageMaker's backend there."""
    from moto.sagemaker.models import sagemaker_backends

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_in_process)
    return sagemaker_backends["123456789012"]["us-east-1"]
