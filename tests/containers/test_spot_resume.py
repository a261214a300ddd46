"""Spot safety: a job stopped mid-run (SIGTERM, as a spot interruption) resumes to the same weights."""
import re
import time

import pytest
import torch
from safetensors.torch import load_file

from support import run_training, start_training, write_opt_ml

pytestmark = pytest.mark.docker
HYPERPARAMETERS = {"epochs": 2, "batch_size": 64, "deterministic": True, "workers": 2}


def test_stopped_and_restarted_job_ends_with_the_same_weights(docker_client, small_data, tmp_path):
    channels = {"train": small_data / "train", "valid": small_data / "valid"}
    reference = run_training(docker_client, tmp_path / "reference", HYPERPARAMETERS, channels)
    assert reference.exit_code == 0, reference.logs[-2000:]

    root = write_opt_ml(tmp_path / "interrupted", HYPERPARAMETERS, channels)
    (root / "checkpoints").mkdir()
    first = start_training(docker_client, root, channels)
    try:
        deadline = time.monotonic() + 300
        while "epoch=1 " not in first.logs().decode() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # into the second epoch
        first.stop(timeout=60)  # SIGTERM, then SIGKILL only after 60 s
        assert first.wait(timeout=60)["StatusCode"] == 143, first.logs().decode()[-2000:]
    finally:
        first.remove(force=True)
    assert not (root / "output" / "success").exists() and not (root / "output" / "failure").exists()
    assert not (root / "model" / "model.safetensors").exists()

    second = start_training(docker_client, root, channels)
    try:
        assert second.wait(timeout=300)["StatusCode"] == 0
        logs = second.logs().decode()
    finally:
        second.remove(force=True)
    resumed = re.search(r"resumed at epoch 2 after (\d+) of its samples", logs)
    assert resumed and int(resumed.group(1)) > 0, logs[-2000:]  # really mid-epoch

    expected = load_file(tmp_path / "reference/model/model.safetensors")
    actual = load_file(root / "model/model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
