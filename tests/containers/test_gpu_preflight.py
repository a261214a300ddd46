"""GPU preflight in the images, on stand-in GPU hosts (a fake nvidia-smi and fake compat libraries:
this machine has no GPU): what each image is built for, the driver decision, and no silent CPU."""
import json
import time

import pytest
import requests

from byoc import cuda
from support import LABEL, SERVING_IMAGE, TRAINING_IMAGE, run_training, stand_in_gpu_host, start_serving

pytestmark = pytest.mark.docker
FACTS = ("import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda or '', "
         "'archs': torch._C._cuda_getArchFlags().split() if torch.version.cuda else []}))")


@pytest.mark.parametrize("image", [TRAINING_IMAGE, SERVING_IMAGE])
def test_the_images_say_what_their_torch_is_built_for(docker_client, image):
    built = json.loads(docker_client.containers.run(image, ["python3", "-c", FACTS], entrypoint=[], remove=True,
                                                    labels=LABEL, network_mode="none"))
    config = docker_client.images.get(image).attrs["Config"]
    labels, env = config["Labels"], dict(item.split("=", 1) for item in config["Env"])
    assert labels["byoc.torch.version"] == built["torch"]
    assert labels["byoc.cuda.version"] == built["cuda"] == env["BYOC_CUDA_VERSION"]
    assert labels["byoc.cuda.archs"].split(",") == built["archs"]
    assert env["NVIDIA_REQUIRE_CUDA"] == cuda.requirement({**built, "compat": labels["byoc.cuda.compat-driver"]})
    # The build this kit ships: CUDA 12 (R525+ drivers), kernels from V100 (sm_70) to Blackwell.
    assert built["cuda"].startswith("12.") and {"sm_70", "sm_75", "sm_80", "sm_86", "sm_90"} <= set(built["archs"])


@pytest.fixture
def one_class_job(small_data, tmp_path):
    return {"train": small_data / "valid"}


def train_on_stand_in(client, tmp_path, channels, driver, compat=None, environment=None):
    host = stand_in_gpu_host(tmp_path / "host", driver, compat)
    return run_training(client, tmp_path / "job", {"epochs": 1}, channels, volumes=host, environment=environment,
                        timeout=300)


def test_training_refuses_a_driver_too_old_for_its_cuda_in_one_paragraph(docker_client, tmp_path, one_class_job):
    run = train_on_stand_in(docker_client, tmp_path, one_class_job, "470.57.02")
    assert run.exit_code != 0 and run.failure, run.logs[-2000:]
    for phrase in ("needs CUDA 12.8", "R525", "the host's driver is 470.57.02", "no CUDA forward-compatibility",
                   "BYOC_DEVICE=cpu"):
        assert phrase in run.failure, run.failure
    assert "\n" not in run.failure.strip() and "epoch=1" not in run.logs


def test_training_uses_forward_compatibility_libraries_when_the_image_has_them(docker_client, tmp_path,
                                                                               one_class_job):
    run = train_on_stand_in(docker_client, tmp_path, one_class_job, "470.57.02", compat="570.124.06")
    assert "using the CUDA forward-compatibility libraries 570.124.06 from /usr/local/cuda/compat" in run.logs
    assert "starting again with /usr/local/cuda/compat first on LD_LIBRARY_PATH" in run.logs
    # The stand-in libraries are names only, so CUDA does not start: the job must say so, not train on the CPU.
    assert run.exit_code != 0 and "torch cannot use them" in run.failure, run.logs[-2000:]


def test_training_never_falls_back_to_the_cpu_silently(docker_client, tmp_path, one_class_job):
    run = train_on_stand_in(docker_client, tmp_path, one_class_job, "535.54.03")
    assert "driver 535.54.03: runs this image's CUDA 12.8" in run.logs
    assert run.exit_code != 0 and "torch cannot use them: torch.cuda.is_available() is False" in run.failure
    assert not (tmp_path / "job" / "model" / "model.safetensors").exists()


def test_training_on_the_cpu_on_purpose(docker_client, tmp_path, one_class_job):
    run = train_on_stand_in(docker_client, tmp_path, one_class_job, "535.54.03", environment={"BYOC_DEVICE": "cpu"})
    assert run.exit_code == 0, run.logs[-2000:]
    assert "BYOC_DEVICE=cpu: running on the CPU on purpose; 1 GPU(s) left unused" in run.logs


def serve_on_stand_in(client, tmp_path, model_dir, driver, environment=None):
    volumes = [f"{model_dir}:/opt/ml/model:ro", *stand_in_gpu_host(tmp_path / "host", driver)]
    return start_serving(client, None, volumes=volumes, environment=environment, ready=False)


@pytest.mark.parametrize("driver, says", [
    ("470.256.02", "al2-ami-sagemaker-inference-gpu-2-1"),  # SageMaker's default hosting driver on g4dn/g5/p3/p4d
    ("535.54.03", "torch cannot use them"),                # a driver that would do, but no GPU behind it
])
def test_serving_refuses_to_start_on_gpus_it_cannot_use(docker_client, trained, tmp_path, driver, says):
    endpoint = serve_on_stand_in(docker_client, tmp_path, trained.opt_ml / "model", driver)
    try:
        assert endpoint.container.wait(timeout=120)["StatusCode"] != 0
        logs = endpoint.container.logs().decode(errors="replace")
        assert "serve: cannot serve on this host:" in logs and says in logs, logs[-2000:]
        assert "Traceback" not in logs
    finally:
        endpoint.container.remove(force=True)


def test_serving_on_the_cpu_on_purpose(docker_client, trained, tmp_path, small_data):
    endpoint = serve_on_stand_in(docker_client, tmp_path, trained.opt_ml / "model", "470.256.02",
                                 environment={"BYOC_DEVICE": "cpu"})
    try:
        image = next((small_data / "test" / "001.T-shirt_top").glob("*.png"))
        for _ in range(240):
            try:
                if requests.get(f"{endpoint.url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            endpoint.container.reload()
            assert endpoint.container.status == "running", endpoint.container.logs().decode()[-2000:]
            time.sleep(0.5)
        response = requests.post(f"{endpoint.url}/invocations", data=image.read_bytes(),
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert response.status_code == 200
        assert "BYOC_DEVICE=cpu: running on the CPU on purpose" in endpoint.container.logs().decode()
    finally:
        endpoint.container.remove(force=True)
