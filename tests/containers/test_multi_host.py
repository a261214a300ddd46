"""Multi-host training: the compose profile `multi` runs algo-1 and algo-2 as one DDP job (Gloo on CPU).

The two "hosts" share this machine's cores, so the runs are small: 5,000 training images, few epochs.
"""
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from byoc import contract
from support import TRAINING_IMAGE, run_training

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
HOSTS = ("algo-1", "algo-2")
HYPERPARAMETERS = {"epochs": 2, "batch_size": 64, "workers": 1, "distributed_timeout": 30}
# Two hosts see the same data in another order, with batch-norm statistics over half batches:
# on 300 test images after 2 epochs their test accuracy lies within this of one host's.
ACCURACY_TOLERANCE = 0.05


class MultiHostJob:
    """`docker compose --profile multi` over an /opt/ml tree per host, in its own compose project."""

    def __init__(self, docker_client, data: Path, root: Path, hyperparameters: dict):
        config = root / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(contract.encode_hyperparameters(hyperparameters)))
        channels = REPO / "containers/local/config/inputdataconfig.json"
        (config / "inputdataconfig.json").write_text(channels.read_text())
        self.client, self.root = docker_client, root
        self.project = f"byoc-ddp-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, TRAINING_IMAGE=TRAINING_IMAGE, DATA_DIR=str(data), CONFIG_DIR=str(config),
                        OPT_ML_DIR=str(root / "opt_ml"))

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

    def make(hyperparameters: dict) -> MultiHostJob:
        jobs.append(MultiHostJob(docker_client, small_data, tmp_path / f"job{len(jobs)}", hyperparameters))
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
