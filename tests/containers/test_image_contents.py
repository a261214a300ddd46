"""Each image carries only what it runs: no serving code in the training image, no training code in
the serving image, and neither carries the host tools (byoc_cloud); TensorBoard's writer is the
training image's alone."""
import pytest

from support import LABEL, SERVING_IMAGE, TRAINING_IMAGE

pytestmark = pytest.mark.docker
MODULES = ("byoc.contract", "byoc.models", "byoc.training.main", "byoc.serving.handler", "byoc_cloud", "tensorboard")
PROBE = f"""
import importlib, shutil
for name in {MODULES!r}:
    try:
        importlib.import_module(name)
        print(name)
    except ImportError:
        pass
for command in ("train", "serve"):
    if shutil.which(command):
        print(command)
"""


def contents(client, image: str) -> set[str]:
    output = client.containers.run(image, ["python3", "-c", PROBE], entrypoint=[], remove=True, labels=LABEL,
                                   network_mode="none")
    return set(output.decode().split())


def test_the_training_image_has_no_serving_code(docker_client):
    found = contents(docker_client, TRAINING_IMAGE)
    assert found == {"byoc.contract", "byoc.models", "byoc.training.main", "tensorboard", "train"}, found


def test_the_serving_image_has_no_training_code(docker_client):
    found = contents(docker_client, SERVING_IMAGE)
    assert found == {"byoc.contract", "byoc.models", "byoc.serving.handler", "serve"}, found
