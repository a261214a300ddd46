"""Multi-host training: the compose profile `multi` runs algo-1 and algo-2 as one DDP job (Gloo on CPU).

The two "hosts" share this machine's cores, so the runs are small: 5,000 training images, few epochs.
"""
import io
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from byoc import contract
from support import COMPOSE_PREFIX, TRAINING_IMAGE, run_training

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
HOSTS = ("algo-1", "algo-2")
HYPERPARAMETERS = {"epochs": 2, "batch_size": 64, "workers": 1, "distributed_timeout": 30}
# Two hosts see the same data in another order, with batch-norm statistics over half batches:
# on 300 test images after 2 epochs their test accuracy lies within this of one host's.
ACCURACY_TOLERANCE = 0.05


class MultiHostJob:
    """`docker compose --profile multi` over an /opt/ml tree per host, in its own compose project.
    `data`: one folder for every host, or {host: its own folder}; `channels`: inputdataconfig.json."""

    def __init__(self, docker_client, data: Path | dict, root: Path, hyperparameters: dict,
                 channels: dict | None = None):
        config = root / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(contract.encode_hyperparameters(hyperparameters)))
        default = REPO / "containers/local/config/inputdataconfig.json"
        (config / "inputdataconfig.json").write_text(json.dumps(channels) if channels else default.read_text())
        self.client, self.root = docker_client, root
        self.project = f"{COMPOSE_PREFIX}-ddp-{uuid.uuid4().hex[:8]}"
        per_host = data if isinstance(data, dict) else {}
        self.env = dict(os.environ, TRAINING_IMAGE=TRAINING_IMAGE, CONFIG_DIR=str(config),
                        OPT_ML_DIR=str(root / "opt_ml"),
                        **({} if per_host else {"DATA_DIR": str(data)}),
                        **{f"{host.upper().replace('-', '_')}_DATA_DIR": str(path) for host, path in per_host.items()})

    def compose(self, *args, timeout=600) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "-p", self.project, "-f", str(REPO / "docker-compose.yml"),
                               "--profile", "multi", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def container(self, host: str):
        found = self.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={host}"]})
        assert len(found) == 1, f"{host}: {found}"
        return found[0]

    def wait_for_log(self, host: str, text: str, timeout: float = 300) -> None:
        container, deadline = self.container(host), time.monotonic() + timeout
        while text not in container.logs().decode(errors="replace"):
            container.reload()
            assert container.status == "running" and time.monotonic() < deadline, (
                f"{host} never logged {text!r}:\n{container.logs().decode(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def host_dir(self, host: str) -> Path:
        return self.root / "opt_ml" / host

    def failure(self, host: str) -> str:
        path = self.host_dir(host) / "output" / "failure"
        return path.read_text() if path.exists() else ""

    def down(self) -> None:
        self.compose("down", "--remove-orphans", "--timeout", "5", timeout=120)


@pytest.fixture
def job(docker_client, small_data, tmp_path):
    jobs = []

    def make(hyperparameters: dict, data=None, channels=None) -> MultiHostJob:
        jobs.append(MultiHostJob(docker_client, data or small_data, tmp_path / f"job{len(jobs)}", hyperparameters,
                                 channels))
        return jobs[-1]

    yield make
    for started in jobs:
        started.down()


def test_two_hosts_train_like_one_and_write_the_model_once(job, docker_client, small_data, tmp_path):
    channels = {name: small_data / name for name in ("train", "valid", "test")}
    single = run_training(docker_client, tmp_path / "single", HYPERPARAMETERS, channels)
    assert single.exit_code == 0, single.logs[-3000:]

    multi = job(HYPERPARAMETERS)
    up = multi.compose("up", *HOSTS)
    logs = up.stdout[-4000:] + up.stderr[-2000:]
    assert [multi.container(host).attrs["State"]["ExitCode"] for host in HOSTS] == [0, 0], logs
    for host in HOSTS:
        assert (multi.host_dir(host) / "output/success").exists(), logs
    assert "2 host(s) x 1 process(es), rendezvous on algo-1:7777" in up.stdout + up.stderr

    # Rank 0 (algo-1) alone writes the model, the checkpoints and the metrics.
    leader, follower = multi.host_dir("algo-1"), multi.host_dir("algo-2")
    assert (leader / "model/model.safetensors").exists() and (leader / "output/data/metrics.json").exists()
    assert not any((follower / "model").iterdir()) and not (follower / "output/data/metrics.json").exists()
    assert not any((follower / "checkpoints").iterdir())

    metrics = json.loads((leader / "output/data/metrics.json").read_text())
    reference = json.loads((single.opt_ml / "output/data/metrics.json").read_text())
    assert sum(sum(row) for row in metrics["test_confusion"]) == 300  # evaluated on both shards, summed
    assert abs(metrics["test_acc"] - reference["test_acc"]) <= ACCURACY_TOLERANCE, (metrics["test_acc"],
                                                                                   reference["test_acc"])
    assert metrics["test_acc"] > 0.6  # it learned
    print(f"test accuracy: 1 host {reference['test_acc']:.4f}, 2 hosts {metrics['test_acc']:.4f}")


def test_a_host_that_dies_mid_run_fails_the_other_within_the_timeout(job):
    multi = job({**HYPERPARAMETERS, "epochs": 6})
    started = multi.compose("up", "-d", *HOSTS)
    assert started.returncode == 0, started.stderr
    multi.wait_for_log("algo-1", "epoch=1 ")
    multi.container("algo-2").kill()  # SIGKILL: no goodbye, as when an instance disappears
    killed = time.monotonic()
    exit_code = multi.container("algo-1").wait(timeout=300)["StatusCode"]
    waited = time.monotonic() - killed
    print(f"algo-1 exited {waited:.1f} s after algo-2 was killed")

    logs = multi.container("algo-1").logs().decode(errors="replace")[-3000:]
    assert exit_code == 1, logs
    failure = multi.failure("algo-1")
    assert failure.startswith("Distributed training failed on host algo-1 (node 1 of 2): Lost contact"), failure
    assert "\n" not in failure.strip()  # one paragraph, no traceback
    assert waited < HYPERPARAMETERS["distributed_timeout"] + 60, waited  # bounded: no hang until the job's limit
    assert not (multi.host_dir("algo-1") / "model/model.safetensors").exists()


def test_a_host_that_never_comes_fails_the_other_within_the_timeout(job):
    multi = job({**HYPERPARAMETERS, "distributed_timeout": 10})
    start = time.monotonic()
    up = multi.compose("up", "algo-1", timeout=300)  # algo-2 never starts
    took = time.monotonic() - start
    print(f"algo-1 alone exited after {took:.1f} s")
    assert multi.container("algo-1").attrs["State"]["ExitCode"] == 1, up.stdout[-3000:]
    failure = multi.failure("algo-1")
    assert "did not all meet at algo-1:7777 within distributed_timeout=10 s" in failure, failure
    assert "1/2 clients joined" in failure
    assert took < 10 + 120, took  # the timeout plus starting the container and importing torch


SHARDED = {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key", "RecordWrapperType": "None"}
REPLICATED = {**SHARDED, "S3DistributionType": "FullyReplicated"}


def split_between_hosts(source: Path, hosts: dict[str, Path], first_share: float, only_first: tuple = ()) -> None:
    """Each class folder's images split in two, as ShardedByS3Key splits S3 objects: `first_share` of them
    to the first host and the rest to the second; classes in `only_first` go to the first host alone."""
    first, second = hosts.values()
    for folder in sorted(source.iterdir()):
        images = sorted(folder.iterdir())
        cut = len(images) if folder.name in only_first else round(len(images) * first_share)
        for host_root, share in ((first, images[:cut]), (second, images[cut:])):
            (host_root / folder.name).mkdir(parents=True, exist_ok=True)
            for image in share:
                os.link(image, host_root / folder.name / image.name)


@pytest.fixture
def shards(small_data, tmp_path) -> dict[str, Path]:
    """Unequal shards: algo-1 holds 60 % of each training class and all of Ankle boot (3,200 images), algo-2
    the rest (1,800, no Ankle boot folder at all) plus one corrupt JPEG; test 18/12 a class; valid on both."""
    hosts = {host: tmp_path / "shards" / host for host in HOSTS}
    split_between_hosts(small_data / "train", {h: p / "train" for h, p in hosts.items()}, 0.6, ("010.Ankle_boot",))
    split_between_hosts(small_data / "test", {h: p / "test" for h, p in hosts.items()}, 0.6)
    for root in hosts.values():
        shutil.copytree(small_data / "valid", root / "valid", copy_function=os.link)
    jpeg = io.BytesIO()
    source = next((small_data / "train/001.T-shirt_top").iterdir())
    Image.open(source).convert("RGB").resize((64, 64)).save(jpeg, "JPEG")
    cut = jpeg.getvalue().index(b"\xff\xda") + 40  # headers whole, scan data cut: Image.verify() passes it
    (hosts["algo-2"] / "train/001.T-shirt_top/corrupt.jpg").write_bytes(jpeg.getvalue()[:cut])
    return hosts


def test_sharded_channels_train_each_host_on_its_own_files(job, shards):
    """ShardedByS3Key: every host trains on its own, unequal shard at one pace; the sharded test channel is
    summed over hosts, the replicated valid channel counted once; a corrupt JPEG is found in the scan even
    with nothing cached; progress lines come from rank 0 only."""
    multi = job({**HYPERPARAMETERS, "cache_mb": 0, "progress_seconds": 1}, data=shards,
                channels={"train": SHARDED, "valid": REPLICATED, "test": SHARDED})
    up = multi.compose("up", *HOSTS)
    logs = {host: multi.container(host).logs().decode(errors="replace") for host in HOSTS}
    assert [multi.container(host).attrs["State"]["ExitCode"] for host in HOSTS] == [0, 0], up.stdout[-4000:]

    metrics = json.loads((multi.host_dir("algo-1") / "output/data/metrics.json").read_text())
    assert metrics["data"]["hosts"] == {"algo-1": {"train": 3200, "valid": 300, "test": 180},
                                        "algo-2": {"train": 1800, "valid": 300, "test": 120}}
    assert metrics["data"]["channels"] == {"train": {"distribution": "ShardedByS3Key", "images": 5000},
                                           "valid": {"distribution": "FullyReplicated", "images": 300},
                                           "test": {"distribution": "ShardedByS3Key", "images": 300}}
    # 32 images a process a step; algo-2's 1,800 images allow 56 steps, so both hosts run 56
    assert (metrics["data"]["steps_per_epoch"], metrics["data"]["images_per_epoch"]) == (56, 3584)
    assert "every process trains 56 steps an epoch (3584 of the 5000 training images)" in logs["algo-2"]
    assert [e["valid_images"] for e in metrics["epochs"]] == [300, 300]  # replicated: not double-counted
    confusion = metrics["test_confusion"]
    assert sum(map(sum, confusion)) == 300 and sum(confusion[9]) == 30  # each host's own test files, summed
    assert json.loads((multi.host_dir("algo-1") / "model/model.json").read_text())["class_names"][9] == "Ankle boot"
    assert metrics["test_acc"] > 0.5, metrics["test_acc"]

    assert "skipping 1 unreadable image(s)" in logs["algo-2"] and "corrupt.jpg" in logs["algo-2"]
    assert " progress epoch 1/2 step " in logs["algo-1"] and " progress epoch " not in logs["algo-2"]
