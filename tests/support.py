"""What the unit, container and SDK tests share: image names, free ports, /opt/ml trees,
the images started through SageMaker's container contract (docker SDK), and expected answers
computed by the product's own Classifier.

Each training test gets a temporary /opt/ml tree laid out as SageMaker lays it out:
input/config/*.json, one read-only folder per channel, model/ and output/.
"""
import io
import json
import os
import socket
import tarfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import pytest
import requests

from byoc import contract

TRAINING_IMAGE = os.environ.get("TRAINING_IMAGE", "byoc-training:latest")
SERVING_IMAGE = os.environ.get("SERVING_IMAGE", "byoc-serving:latest")
# Everything one test session starts carries its own id, so cleanup never touches
# the containers of another session sharing the engine (a second checkout, CI).
RUN_ID = uuid.uuid4().hex[:12]
LABEL = {"byoc.test-run": RUN_ID}
# docker compose project names start with this (sessions sharing an engine can tell theirs apart).
COMPOSE_PREFIX = os.environ.get("BYOC_COMPOSE_PREFIX", "byoc")


def remove_containers(client, **filters) -> None:
    """Force-remove every container matching `filters`."""
    remove_all(client.containers.list(all=True, ignore_removed=True, filters=filters))


def remove_all(containers) -> None:
    """Force-remove each container. One run with auto_remove may go (or be going) on its own
    meanwhile: the engine's 404 and 409 for it mean done, not failed."""
    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if error.status_code != 409 or "already in progress" not in str(error):
                raise


def created_from(client, image: str) -> list:
    """The containers run from `image` by that very name. (The engine's `ancestor` filter is no
    use here: it matches every container of the same image ID, whatever name it was run by.)"""
    return [c for c in client.containers.list(all=True, ignore_removed=True) if c.attrs["Config"]["Image"] == image]


def describe(containers) -> str:
    """One line per container, for a failure message."""
    return "; ".join(f"{c.name} {c.status} created {c.attrs.get('Created', '?')} labels {c.labels}"
                     for c in containers) or "none"


def stand_in_gpu_host(folder: Path, driver: str, compat: str | None = None) -> list[str]:
    """Volumes that make a container look like a GPU host without one: an nvidia-smi on PATH (where
    the NVIDIA runtime puts it) that lists one T4 and reports `driver`, and, with `compat`, CUDA
    forward-compatibility libraries of that version in /usr/local/cuda/compat (names only)."""
    bin_dir = folder / "nvidia-bin"
    bin_dir.mkdir(parents=True)
    smi = bin_dir / "nvidia-smi"
    # `-L` / `--list-gpus`, and `--query-gpu=a,b --format=csv[,noheader]` for the fields MMS and we ask.
    smi.write_text(f"""#!/bin/sh
values() {{ for field in $(echo "$1" | tr , ' '); do case $field in
  index) printf '0';; driver_version) printf '{driver}';; name) printf 'Tesla T4';; *) printf '[N/A]';; esac
  printf ', '; done | sed 's/, $//'; echo; }}
for arg in "$@"; do case $arg in
  -L|--list-gpus) echo "GPU 0: Tesla T4 (UUID: GPU-5fd0b7a2-0000-0000-0000-000000000000)"; exit 0;;
  --query-gpu=*) query=${{arg#--query-gpu=}};;
  --format=*) format=${{arg#--format=}};;
esac; done
if [ -n "$query" ]; then
  case $format in *noheader*) ;; *) echo "$query" | sed 's/,/, /g';; esac
  values "$query"; exit 0
fi
echo "NVIDIA-SMI stand-in: driver {driver}, one Tesla T4"
""")
    smi.chmod(0o755)
    volumes = [f"{bin_dir}:/usr/local/nvidia/bin:ro"]
    if compat:
        libraries = folder / "compat"
        libraries.mkdir()
        (libraries / f"libcuda.so.{compat}").write_bytes(b"")
        volumes.append(f"{libraries}:/usr/local/cuda/compat:ro")
    return volumes


def docker_with_images():
    """The docker client, once both images are there (else the test fails saying what to do)."""
    import docker

    client = docker.from_env()
    for image in (TRAINING_IMAGE, SERVING_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run `make build` first")
    return client


@dataclass
class TrainingRun:
    exit_code: int
    logs: str
    opt_ml: Path

    @property
    def failure(self) -> str | None:
        path = self.opt_ml / "output" / "failure"
        return path.read_text() if path.exists() else None


def write_opt_ml(root: Path, hyperparameters: dict, channels: dict[str, Path]) -> Path:
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(contract.encode_hyperparameters(hyperparameters)))
    (config / "inputdataconfig.json").write_text(json.dumps({name: {"TrainingInputMode": "File"} for name in channels}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    for name in ("model", "output"):
        (root / name).mkdir()
    return root


def training_volumes(root: Path, channels: dict[str, Path], checkpoints: Path | None = None) -> list[str]:
    """Bind mounts of a job's /opt/ml tree. A list, not a dict keyed by host path:
    one folder may back two channels. checkpoints: a folder several jobs share (else root/checkpoints)."""
    volumes = [f"{root / 'input' / 'config'}:/opt/ml/input/config:ro", f"{root / 'model'}:/opt/ml/model:rw",
               f"{root / 'output'}:/opt/ml/output:rw"]
    checkpoints = checkpoints or root / "checkpoints"
    if checkpoints.is_dir():
        volumes.append(f"{checkpoints}:/opt/ml/checkpoints:rw")
    return volumes + [f"{path}:/opt/ml/input/data/{name}:ro" for name, path in channels.items()]


def start_training(client, root: Path, channels: dict[str, Path], command=("train",), volumes=(), environment=None,
                   checkpoints: Path | None = None, user: str | None = None):
    """A detached training container over an /opt/ml tree made by write_opt_ml, plus `volumes` (docker's
    "host:container:mode" strings); environment: what SageMaker sets, e.g. TRAINING_JOB_NAME; user:
    docker's --user (None: the image's, root)."""
    return client.containers.run(
        TRAINING_IMAGE, list(command) if command else None,
        volumes=training_volumes(root, channels, checkpoints) + list(volumes),
        detach=True, labels=LABEL, shm_size="1g", network_mode="none", environment=environment or {}, user=user,
    )


def run_training(client, root: Path, hyperparameters: dict, channels: dict[str, Path],
                 command: list[str] | None = ("train",), timeout: int = 600, **options) -> TrainingRun:
    write_opt_ml(root, hyperparameters, channels)
    container = start_training(client, root, channels, command, **options)
    try:
        exit_code = container.wait(timeout=timeout)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    return TrainingRun(exit_code, logs, root)


def free_port(host: str = "127.0.0.1", candidates: Iterable[int] = (0,), taken: Iterable[int] = ()) -> int:
    """A port free on `host`: any (the kernel picks), or the first free one of `candidates`."""
    for port in candidates:
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    pytest.fail(f"no free port among {candidates} on {host}")


@dataclass
class Endpoint:
    url: str
    container: object


def start_serving(client, model_dir: Path | None, command=("serve",), environment=None, container_port=8080,
                  wait: float = 120, volumes: dict | None = None, ready: bool = True, **options) -> Endpoint:
    """A serving container on a free loopback port, returned once /ping answers 200 (ready=False: at once)."""
    port = free_port()
    if volumes is None:
        volumes = {str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}}
    container = client.containers.run(
        SERVING_IMAGE, list(command) if command else None, detach=True, labels=LABEL,
        environment=environment or {}, ports={f"{container_port}/tcp": ("127.0.0.1", port)}, volumes=volumes,
        **options,
    )
    url = f"http://127.0.0.1:{port}"
    if not ready:
        return Endpoint(url, container)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return Endpoint(url, container)
        except requests.ConnectionError:
            pass
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.2)
    logs = container.logs().decode(errors="replace")[-3000:]
    container.remove(force=True)
    pytest.fail(f"serving container did not answer /ping on {url}:\n{logs}")


def post_image(url: str, path: Path, headers: dict | None = None) -> requests.Response:
    return requests.post(url, data=path.read_bytes(), headers={"Content-Type": "image/png", **(headers or {})},
                         timeout=30)


def label_of(class_folder: Path) -> str:
    """'003.Pullover' -> 'Pullover' (the contract's class-name rule)."""
    return contract.display_name(class_folder.name)


def expected_answer(model_dir: Path, body: bytes, content_type: str = "image/png",
                    top_k: int = contract.DEFAULT_TOP_K, multi_model: bool = False) -> dict:
    """What the endpoint should answer: the product's own chain (decode, Classifier.predict) run here,
    in the precision the server picks on this host by default (BYOC_PRECISION=auto: bf16 where the
    CPU has it and the model's recorded agreement clears the bar; same torch, same kernels), in the
    CPU graph mode the endpoint's settings choose (multi_model: a multi-model endpoint's default)."""
    import torch

    from byoc.serving import payloads, settings
    from byoc.serving.inference import Classifier

    served = settings.from_environment()
    graph = settings.cpu_graph_default(multi_model)  # as the endpoint's own settings choose it
    classifier = _classifiers.get((model_dir, graph)) or Classifier.load(
        str(model_dir), torch.device("cpu"), served.precision, served.min_agreement, graph)
    _classifiers[(model_dir, graph)] = classifier
    return classifier.predict(payloads.decode(body, content_type, settings.limits_from_environment()), top_k)


_classifiers: dict = {}


def assert_same_predictions(got: list, expected: list) -> None:
    """Equal labels, probabilities equal to float noise (a batch may sum in another order)."""
    if got and isinstance(got[0], list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same_predictions(g, e)
        return
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert all(abs(g["probability"] - e["probability"]) < 1e-4 for g, e in zip(got, expected)), (got, expected)


def tiny_image(client, content: str, prefix: str, labels: dict | None = None, platform: str | None = None) -> str:
    """A few-byte image (FROM scratch) holding `content`, so each gets its own ID; tagged
    PREFIX:<random>, labelled byoc-test=1 (and `labels`) for the tests' clean-up. platform: e.g.
    linux/arm64 (COPY runs nothing, so no emulator is needed)."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in {"Dockerfile": b"FROM scratch\nCOPY content /content\n", "content": content.encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tag = f"{prefix}:{uuid.uuid4().hex[:8]}"
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, platform=platform,
                        labels={**(labels or {}), "byoc-test": "1"})
    return tag
