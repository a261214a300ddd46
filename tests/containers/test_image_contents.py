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


STAND_INS = """
import subprocess, sys, sysconfig
from pathlib import Path
site = Path(sysconfig.get_paths()["purelib"])
for name in ("nvidia/nccl/lib/libnccl.so.2", "nvidia/cusparselt/lib/libcusparseLt.so.0"):
    print(name, (site / name).stat().st_size)
print("triton", (site / "triton").exists())
import torch, torchvision
print("resnet50", tuple(torchvision.models.resnet50().eval()(torch.randn(1, 3, 64, 64)).shape))
call = subprocess.run([sys.executable, "-c", "import torch; torch.cuda.nccl.unique_id()"], capture_output=True, text=True)
print("nccl_call", call.returncode, call.stderr.strip().splitlines()[-1] if call.stderr.strip() else "")
"""


def test_the_serving_image_has_stand_ins_for_what_a_server_never_calls(docker_client):
    """NCCL and cuSPARSELt are small stand-ins and Triton is gone (README: Serving image size): torch
    still imports and runs a model; a call into a stand-in aborts, naming the library."""
    output = docker_client.containers.run(SERVING_IMAGE, ["python3", "-c", STAND_INS], entrypoint=[], remove=True,
                                          labels=LABEL, network_mode="none").decode()
    lines = dict(line.split(" ", 1) for line in output.strip().splitlines() if " " in line)
    assert int(lines["nvidia/nccl/lib/libnccl.so.2"]) < 100_000, output  # the real one is 410 MiB
    assert int(lines["nvidia/cusparselt/lib/libcusparseLt.so.0"]) < 100_000, output
    assert lines["triton"] == "False" and lines["resnet50"] == "(1, 1000)", output
    code, message = lines["nccl_call"].split(" ", 1)
    assert int(code) != 0 and "libnccl.so.2 is a stand-in in this image" in message, output


def test_the_training_image_keeps_the_real_nccl(docker_client):
    """Training on several GPUs needs NCCL itself."""
    output = docker_client.containers.run(
        TRAINING_IMAGE, ["python3", "-c", STAND_INS.split("import torch, torchvision")[0]], entrypoint=[], remove=True,
        labels=LABEL, network_mode="none").decode()
    assert int(output.split()[1]) > 100_000_000 and "triton True" in output, output


EAGER_ONLY = """
import sys, torch
import byoc.serving.handler
from byoc import precision
from byoc.models import build_model
model = precision.prepare(build_model("resnet50", 3), torch.float32, graph=True)
precision.run(model, torch.zeros(1, 3, 64, 64))
print("dynamo imported" if "torch._dynamo" in sys.modules else "no dynamo", model.graph)
import torchvision.ops
features = torch.arange(16.0).reshape(1, 1, 4, 4)
box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
print(torchvision.ops.roi_align(features, box, output_size=1, aligned=True).item(), features.mean().item())
"""


def test_the_serving_worker_never_imports_torch_dynamo(docker_client):
    """torchvision imports dynamo only when roi_align needs it (containers/serving/lazy_dynamo_import.py):
    a worker's imports, model and graph mode leave it out; roi_align still works, importing it then."""
    output = docker_client.containers.run(SERVING_IMAGE, ["python3", "-c", EAGER_ONLY], entrypoint=[], remove=True,
                                          labels=LABEL, network_mode="none").decode().split("\n")
    assert output[0] == "no dynamo True", output
    pooled, mean = map(float, output[1].split())
    assert pooled == pytest.approx(mean), output  # one bin over the whole map: its mean
