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


# The labels make build gives an image whose torch is PyPI's 2.10 (CUDA 12.8) build, and those of a
# CUDA 13 build (2.13: no sm_70, R580+ drivers) for the refusals.
CUDA_12_8 = {"torch": "2.10.0+cu128", "cuda": "12.8",
             "archs": ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], "compat": ""}
CUDA_13_0 = {"torch": "2.13.0+cu130", "cuda": "13.0", "archs": ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100",
                                                                  "sm_120"], "compat": ""}


def labelled_image(client, content: str, facts: dict, platform: str | None = None) -> str:
    """A few-byte image (FROM scratch) carrying the byoc.* labels of a build with these facts."""
    from byoc import cuda
    from support import tiny_image

    flags = cuda.build_flags(facts)
    labels = dict(flags[i + 1].split("=", 1) for i in range(0, len(flags), 2) if flags[i] == "--label")
    return tiny_image(client, content, "byoc-launch-test", labels, platform)


@pytest.fixture
def local_images(aws_env):
    """Labelled CUDA 12.8 images in the local engine only, one built for linux/amd64, one for linux/arm64."""
    import uuid

    import docker

    client = docker.from_env()
    images = {arch: labelled_image(client, f"{arch} {uuid.uuid4()}", CUDA_12_8, f"linux/{arch}")
              for arch in ("amd64", "arm64")}
    yield images
    for image in images.values():
        client.images.remove(image, force=True)


@pytest.fixture(scope="session")
def pushed(moto_url, registry, tmp_path_factory):
    """Labelled stand-in images pushed to ECR (moto) and the loopback registry, as `make push` does:
    {"training", "serving", "serving-next", "cuda13"} -> image URI by digest."""
    import json

    import docker

    from ecr import cli

    client, output = docker.from_env(), tmp_path_factory.mktemp("pushed") / "images.json"
    builds = {"training": CUDA_12_8, "serving": CUDA_12_8, "serving-next": CUDA_12_8, "cuda13": CUDA_13_0}
    local = {name: labelled_image(client, name, facts) for name, facts in builds.items()}
    uris = {}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**standins.env(0, 0), "AWS_ENDPOINT_URL": moto_url, "ECR_REGISTRY": registry}.items():
            patch.setenv(key, value)
        for name, image in local.items():
            repository = f"byoc-launch-{name}"
            boto3.client("ecr").create_repository(repositoryName=repository)
            assert cli.main(["push", "--tag", "1.0.0", "--output", str(output), f"{image}={repository}"]) == 0
            uris[name] = json.loads(output.read_text())[repository]["uri"]
    yield uris
    for image in local.values():
        client.images.remove(image, force=True)


@pytest.fixture
def launch_env(aws_env, pushed, registry, monkeypatch):
    """aws_env, with the pushed images' config blobs read from the loopback registry."""
    monkeypatch.setenv("ECR_REGISTRY", registry)
    return pushed


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


@pytest.fixture
def refusing(live_aws, monkeypatch):
    """refusing(backend_class, method, errors): the in-process moto's `method` answers each of
    `errors` in turn, (AWS's error code, message, HTTP status) or None for its usual answer, then
    its usual answers; botocore gets each error as AWS sends it. AWS_MAX_ATTEMPTS=1 hands every
    one to the code under test (boto3 would otherwise retry some itself first)."""
    from moto.core.exceptions import JsonRESTError

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    def refuse(cls, method: str, errors) -> None:
        original, errors = getattr(cls, method), iter(errors)

        def answer(self, *args, **kwargs):
            if (error := next(errors, None)) is not None:
                code, message, status = error
                refusal = JsonRESTError(code, message)
                refusal.code = status
                raise refusal
            return original(self, *args, **kwargs)
        monkeypatch.setattr(cls, method, answer)
    return refuse
