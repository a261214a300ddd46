"""Runs the SageMaker SDK drivers (drive_sdk_v2.py, drive_sdk_v3.py) with their own interpreters,
as a user would run the SDK, and reads back what they made.

SDK v2 and v3 are both PyPI's `sagemaker`, so each lives in its own venv (`make sdk-venvs`);
the tests run in the main .venv and drive them as subprocesses. The SDKs get no AWS
credentials, a region, a dummy role, telemetry opted out through the SDK's config file, and
an HTTP(S) proxy on loopback that only records: any request the SDK sends off this machine
shows up there instead of leaving.
"""
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import support
from byoc.contract import display_name, load_spec
from support import SERVING_IMAGE, TRAINING_IMAGE  # noqa: F401 (the SDK tests' images)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
HYPERPARAMETERS = {"model": "small_cnn", "epochs": 1, "batch_size": 64}
# Every container the SDKs start comes from a compose file under the test's own folder.
COMPOSE_FILES_LABEL = "com.docker.compose.project.config_files"
SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def sdk_python(version: str) -> Path:
    python = Path(os.environ.get(f"SDK_{version.upper()}_PYTHON", REPO / f".venv-sdk-{version}" / "bin" / "python"))
    if not python.exists():
        pytest.fail(f"no SageMaker SDK {version} environment at {python}: run `make sdk-venvs`")
    return python


def port_range() -> range:
    """Ports the SDK's local endpoints may take (SDK_LOCAL_PORTS=first-last)."""
    first, last = os.environ.get("SDK_LOCAL_PORTS", "18000-18099").split("-")
    return range(int(first), int(last) + 1)


def free_port(taken: set[int] = frozenset()) -> int:
    """A port of SDK_LOCAL_PORTS: the SDK publishes the endpoint on all interfaces, so the port must
    be free on all of them."""
    return support.free_port("0.0.0.0", port_range(), taken)


@dataclass
class OutboundRecorder:
    """A loopback HTTP(S) proxy that answers nothing and records who tried to go out."""
    port: int
    attempts: list[str] = field(default_factory=list)

    def start(self) -> "OutboundRecorder":
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.attempts.append(conn.recv(512).split(b"\r\n", 1)[0].decode(errors="replace"))
                except OSError:
                    self.attempts.append("(connection without a request)")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()


def sdk_environment(home: Path, proxy_port: int) -> dict[str, str]:
    """What a user's shell needs for local mode with no AWS account: nothing from ours leaks in."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "sagemaker-config.yaml"
    config.write_text(SDK_CONFIG)
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no credential look-up at 169.254.169.254
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "https_proxy": proxy,
        "NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1",
    }
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    return env


@dataclass
class SdkRun:
    result: dict
    containers: list[dict]  # what the SDK started: name, compose service (the host), image, exit code
    log: str


def sdk_containers(client, root: Path) -> list:
    return [c for c in client.containers.list(all=True, ignore_removed=True, filters={"label": COMPOSE_FILES_LABEL})
            if c.labels[COMPOSE_FILES_LABEL].startswith(f"{root}/")]


def remove_sdk_containers(client, root: Path) -> None:
    support.remove_all(sdk_containers(client, root))


def run_driver(version: str, client, root: Path, env: dict, args: list[str], timeout: int = 900) -> SdkRun:
    """drive_sdk_<version>.py: a training job, and what follows it."""
    return run_script(version, f"drive_sdk_{version}.py", client, root, env, [
        "--training-image", TRAINING_IMAGE, "--hyperparameters", json.dumps(HYPERPARAMETERS), *args], timeout)


def run_script(version: str, script: str, client, root: Path, env: dict, args: list[str],
               timeout: int = 900) -> SdkRun:
    """One of this folder's driver scripts with SDK `version`'s interpreter; its result.json back."""
    result_file = root / "result.json"
    command = [str(sdk_python(version)), str(HERE / script), "--serving-image", SERVING_IMAGE,
               "--result", str(result_file), *args]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=timeout,
                          check=False)
    log = done.stdout + done.stderr
    (root / "driver.log").write_text(log)
    if done.returncode != 0:
        pytest.fail(f"SDK {version} {script} failed ({done.returncode}):\n{log[-6000:]}")
    containers = [{"name": c.name, "service": c.labels["com.docker.compose.service"], "status": c.status,
                   "exit_code": c.attrs["State"]["ExitCode"], "image": c.attrs["Config"]["Image"]}
                  for c in sdk_containers(client, root)]
    return SdkRun(json.loads(result_file.read_text()), containers, log)


def wait_until_stopped(client, root: Path, timeout: float = 60) -> list[str]:
    """Names of the SDK's containers still running after `timeout` (the endpoint stops asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        running = [c.name for c in sdk_containers(client, root) if c.status == "running"]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(1)


def unpack(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def check_artifacts(model_data: str, data: Path, dest: Path) -> Path:
    """model.tar.gz and output.tar.gz of a finished job: returns the unpacked model folder."""
    assert model_data.startswith("file://") and model_data.endswith("/model.tar.gz"), model_data
    archive = Path(model_data.removeprefix("file://"))
    model_dir = unpack(archive, dest / "model")
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.safetensors"]
    spec = load_spec(model_dir)
    assert spec.architecture == "small_cnn"
    assert spec.class_names == sorted_class_names(data)

    output = unpack(archive.with_name("output.tar.gz"), dest / "output")
    assert (output / "success").exists() and not (output / "failure").exists()
    metrics = json.loads((output / "data" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]
    assert 0.0 <= metrics["test_acc"] <= 1.0
    for picture in ("training_curves.png", "confusion_matrix.png"):
        assert (output / "data" / picture).stat().st_size > 0
    return model_dir


def sorted_class_names(data: Path) -> list[str]:
    return [display_name(d.name) for d in sorted((data / "train").iterdir())]


def sample_images(data: Path, per_class: int = 2) -> list[Path]:
    return [image for folder in sorted((data / "test").iterdir())
            for image in sorted(folder.glob("*.png"))[:per_class]]


def check_predictions(predictions: dict[str, dict], images: list[Path], model_dir: Path) -> float:
    """The endpoint's answers are the trained model's own: the same top 5 as the model from
    model.tar.gz run here. Returns the share of images whose top label is the true class."""
    assert sorted(predictions) == sorted(map(str, images))
    correct = 0
    for image in images:
        served = predictions[str(image)]["predictions"]
        support.assert_same_predictions(served, support.expected_answer(model_dir, image.read_bytes())["predictions"])
        probabilities = [p["probability"] for p in served]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-4
        correct += served[0]["label"] == display_name(image.parent.name)
    return correct / len(images)


def compose_for_sdk_v2() -> str | None:
    """Why SageMaker SDK v2 local mode would find no compose command, or None."""
    try:
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return "no docker CLI"
    if "v2" in version:
        return None
    if subprocess.run(["sh", "-c", "command -v docker-compose && docker-compose version"],
                      capture_output=True, check=False).returncode == 0:
        return None
    return (f"`docker compose version` prints {version.strip()!r} (no 'v2') and there is no docker-compose "
            "command: run scripts/bootstrap-engine.sh")
