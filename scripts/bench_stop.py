"""make bench-stop: how long a training job takes from SIGTERM to exit when stopped mid-epoch.

SageMaker sends SIGTERM (StopTrainingJob, MaxRuntimeInSeconds, a spot interruption, a tuning
job's early stop) and SIGKILLs the container 120 s later; by then the job must have written its
checkpoint, model package and metrics. For each model below, one job through the training image
on the default data (make data): start it, wait for its first progress line (training is under
way), `docker stop -t 120`, and time it. The log's timestamps split the time into the batch that
was under way and the writes after it. Results: $BENCH_DIR/stop.json.
"""
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))
from byoc import contract  # noqa: E402

IMAGE = os.environ.get("TRAINING_IMAGE", "byoc-training:latest")
DATA = Path(os.environ.get("DATA_DIR", "data/fashion-mnist")).resolve()
OUT = Path(os.environ.get("BENCH_DIR", "bench-results")).resolve()
CASES = {  # what to stop: the smallest model, and ResNet-50 (100 MB of weights, 300 MB of checkpoint)
    "small_cnn": {"model": "small_cnn", "epochs": 3, "batch_size": 128},
    "resnet50": {"model": "resnet50", "epochs": 1, "batch_size": 32, "image_size": 64},
}
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def stamp(logs: str, text: str) -> float | None:
    """The time of the first log line holding `text`."""
    for line in logs.splitlines():
        if text in line and (found := STAMP.match(line)):
            return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def opt_ml(root: Path, hyperparameters: dict) -> list[str]:
    config = root / "input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(contract.encode_hyperparameters(
        {**hyperparameters, "progress_seconds": 2})))
    channels = {name: {"TrainingInputMode": "File"} for name in ("train", "valid")}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    for name in ("model", "output", "checkpoints"):
        (root / name).mkdir()
    return [f"{config}:/opt/ml/input/config:ro", f"{root / 'model'}:/opt/ml/model", f"{root / 'output'}:/opt/ml/output",
            f"{root / 'checkpoints'}:/opt/ml/checkpoints", f"{DATA / 'train'}:/opt/ml/input/data/train:ro",
            f"{DATA / 'valid'}:/opt/ml/input/data/valid:ro"]


def stop_once(client, name: str, hyperparameters: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        container = client.containers.run(IMAGE, ["train"], volumes=opt_ml(root, hyperparameters), detach=True,
                                          shm_size="1g", network_mode="none", labels={"byoc.bench": "stop"})
        try:
            while " progress epoch " not in container.logs().decode(errors="replace"):
                time.sleep(0.2)
            sent = time.time()
            container.stop(timeout=120)  # SIGTERM, SIGKILL after 120 s: SageMaker's window
            exit_code = container.wait()["StatusCode"]
            took = time.time() - sent
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        stopped = json.loads((root / "output/data/metrics.json").read_text())["stopped"]
        noticed, written = stamp(logs, "stop requested"), stamp(logs, "stopped: model")
        sizes = {p.name: p.stat().st_size for p in [*root.glob("checkpoints/*.pt"), *root.glob("model/*")]}
    return {"case": name, "hyperparameters": hyperparameters, "exit_code": exit_code,
            "sigterm_to_exit_s": round(took, 2), "batch_under_way_s": round(noticed - sent, 2),
            "writes_s": round(written - noticed, 2),
            "stopped": stopped, "bytes": sizes}


def main() -> None:
    client = docker.from_env()
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for name, hyperparameters in CASES.items():
        results.append(stop_once(client, name, hyperparameters))
        print(json.dumps(results[-1]))
    (OUT / "stop.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
