"""A stopped job (SIGTERM) leaves a checkpoint to resume from and the model so far: a spot job
resumes to the same weights as an uninterrupted one, a job that is not resumed still has a model,
and another job's hyperparameters cannot continue the checkpoint."""
import json
import re
import time

import pytest
import torch
from safetensors.torch import load_file

from byoc import contract, model_package
from support import run_training, start_training, write_opt_ml

pytestmark = pytest.mark.docker
HYPERPARAMETERS = {"epochs": 2, "batch_size": 64, "deterministic": True, "workers": 2}


def stop_mid_epoch_two(client, root, channels) -> None:
    first = start_training(client, root, channels)
    try:
        deadline = time.monotonic() + 300
        while "epoch=1 " not in first.logs().decode() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # into the second epoch
        first.stop(timeout=60)  # SIGTERM, then SIGKILL only after 60 s: exit 143 means it finished in time
        assert first.wait(timeout=60)["StatusCode"] == 143, first.logs().decode()[-2000:]
    finally:
        first.remove(force=True)


def restart(client, root, channels, hyperparameters) -> tuple[int, str]:
    encoded = contract.encode_hyperparameters(hyperparameters)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(encoded))
    container = start_training(client, root, channels)
    try:
        return container.wait(timeout=300)["StatusCode"], container.logs().decode()
    finally:
        container.remove(force=True)


def newest_checkpoint(root):
    return torch.load(sorted((root / "checkpoints").glob("checkpoint-*.pt"))[-1], weights_only=True)


def test_stopped_and_restarted_job_ends_with_the_same_weights(docker_client, small_data, tmp_path):
    channels = {"train": small_data / "train", "valid": small_data / "valid"}
    reference = run_training(docker_client, tmp_path / "reference", HYPERPARAMETERS, channels)
    assert reference.exit_code == 0, reference.logs[-2000:]

    root = write_opt_ml(tmp_path / "interrupted", HYPERPARAMETERS, channels)
    (root / "checkpoints").mkdir()
    stop_mid_epoch_two(docker_client, root, channels)
    # Neither success nor failure; the model SageMaker uploads if the job is not resumed (StopTrainingJob,
    # MaxRuntimeInSeconds, a tuning job's early stop): the best validated weights so far, and the metrics.
    assert not (root / "output" / "success").exists() and not (root / "output" / "failure").exists()
    stopped = json.loads((root / "output/data/metrics.json").read_text())
    assert [e["epoch"] for e in stopped["epochs"]] == [1] and "test_acc" not in stopped
    assert stopped["stopped"]["signal"] == 15 and stopped["stopped"]["epoch"] == 2
    assert stopped["stopped"]["epoch_images_done"] > 0  # really mid-epoch
    assert stopped["stopped"]["model"] == {"weights": "best_validated", "epoch": 1,
                                           "valid_acc": stopped["epochs"][0]["valid_acc"]}
    model_package.load(root / "model")  # a complete package: model.json and weights that load
    shipped, best = load_file(root / "model/model.safetensors"), newest_checkpoint(root)["best"]["model"]
    assert shipped.keys() == best.keys() and all(torch.equal(shipped[k], best[k]) for k in best)

    # Another job's hyperparameters cannot continue the checkpoint; nothing is lost.
    checkpoints = sorted(p.name for p in (root / "checkpoints").iterdir())
    exit_code, logs = restart(docker_client, root, channels, {**HYPERPARAMETERS, "lr": 0.1})
    failure = (root / "output/failure").read_text()
    assert exit_code == 1 and "belongs to another job: lr 0.05 -> 0.1" in failure and "resume=force" in failure, logs
    assert "\n" not in failure.strip() and sorted(p.name for p in (root / "checkpoints").iterdir()) == checkpoints
    assert load_file(root / "model/model.safetensors").keys() == shipped.keys()  # the stop's model is still there

    # The same job, with another operational setting (loader processes), resumes bit for bit.
    exit_code, logs = restart(docker_client, root, channels, {**HYPERPARAMETERS, "workers": 1})
    assert exit_code == 0, logs[-2000:]
    resumed = re.search(r"resumed at epoch 2 after (\d+) of its samples", logs)
    assert resumed and int(resumed.group(1)) == stopped["stopped"]["epoch_images_done"], logs[-2000:]

    expected = load_file(tmp_path / "reference/model/model.safetensors")
    actual = load_file(root / "model/model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_checkpoint_files_that_cannot_resume_are_skipped_and_the_job_starts_over(docker_client, small_data,
                                                                                 tmp_path):
    """What spot interruptions, partial syncs and users leave in /opt/ml/checkpoints: a write cut short,
    zero bytes, a folder by a checkpoint's name, a user's state_dict by a checkpoint's name, litter."""
    channels = {"train": small_data / "train"}
    root = write_opt_ml(tmp_path / "job", {"epochs": 1, "batch_size": 64}, channels)
    folder = root / "checkpoints"
    folder.mkdir()
    torch.save({"0.weight": torch.zeros(2)}, folder / "checkpoint-e0009-s000000000.pt")
    (folder / "checkpoint-e0008-s000000000.pt").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    (folder / "checkpoint-e0007-s000000000.pt").write_bytes(b"")
    (folder / "checkpoint-e0006-s000000000.pt").mkdir()
    (folder / ".checkpoint-e0010-s000000000.pt.partial").write_bytes(b"half")
    (folder / "README.txt").write_text("not a checkpoint")
    container = start_training(docker_client, root, channels)
    try:
        exit_code, logs = container.wait(timeout=300)["StatusCode"], container.logs().decode()
    finally:
        container.remove(force=True)
    assert exit_code == 0, logs[-3000:]
    assert "checkpoint-e0009-s000000000.pt: not a checkpoint of this job's kind" in logs
    assert "starting from the beginning" in logs and "Traceback" not in logs
