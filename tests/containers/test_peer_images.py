"""make bench-peers compares like with like: the peer images (make peer-images) are AWS's own serving
stacks on the serving image's Python and torch, and serve the same model as the kit."""
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from support import SERVING_IMAGE, docker_with_images

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_peers  # noqa: E402
import bench_serve  # noqa: E402

pytestmark = pytest.mark.docker
VERSIONS = ("import importlib.metadata as m; "
            "print(' '.join(f'{n}=={m.version(n)}' for n in ('torch', 'torchvision', 'numpy', 'pillow')))")
PEERS = {bench_peers.MMS_PEER: "sagemaker_pytorch_serving_container.handler_service",  # in MMS's worker command
         bench_peers.TORCHSERVE_PEER: "org.pytorch.serve.ModelServer"}
KIT_SIGN = "worker(s) x"  # the kit's serve says how it runs MMS


@pytest.fixture(scope="module")
def client():
    client = docker_with_images()
    subprocess.run(["make", "-s", "peer-images", f"SERVING_IMAGE={SERVING_IMAGE}"], cwd=ROOT, check=True)
    return client


@pytest.fixture(scope="module")
def models(client):
    kit, peer = bench_peers.model_dirs(client)
    yield kit, peer
    shutil.rmtree(kit.parent, ignore_errors=True)


def versions(client, image: str) -> str:
    return client.containers.run(image, ["python", "-c", VERSIONS], remove=True, network_mode="none").decode()


def first_answer(client, image: str, model_dir: Path, body: bytes) -> tuple[int, str]:
    """The top class the image's `serve` answers for body, and its log."""
    started = time.perf_counter()
    container = client.containers.run(image, ["serve"], detach=True,
                                      volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}})
    try:
        host, port = bench_serve.address(container, "container", 8080)
        bench_serve.wait_for_first_answer(container, host, port, body, started)
        return bench_peers.top_class(json.loads(bench_serve.Client(host, port).answer(body))), \
            container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("peer", PEERS)
def test_a_peer_runs_on_the_serving_images_own_python_packages(client, peer):
    assert versions(client, peer) == versions(client, SERVING_IMAGE)


def test_every_stack_answers_the_same_class_for_the_same_weights(client, models):
    kit, peer_model = models
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (120, 30, 200)).save(buffer, "JPEG", quality=90)
    ours, kit_logs = first_answer(client, SERVING_IMAGE, kit, buffer.getvalue())
    assert KIT_SIGN in kit_logs
    for image, sign in PEERS.items():
        theirs, logs = first_answer(client, image, peer_model, buffer.getvalue())
        assert theirs == ours, image
        assert sign in logs and KIT_SIGN not in logs  # AWS's stack answered, not the kit's serve
