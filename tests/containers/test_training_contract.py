"""`train` honours SageMaker's training contract."""
import json

import pytest
from PIL import Image
from safetensors.torch import load_file

from support import run_training

pytestmark = pytest.mark.docker


def test_training_writes_model_metrics_and_success(trained):
    model_dir, output = trained.opt_ml / "model", trained.opt_ml / "output"
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.safetensors"]
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["architecture"] == "small_cnn" and spec["class_names"][0] == "T-shirt top"
    assert spec["preprocessing"]["crop_size"] == 28 and len(spec["class_names"]) == 10
    assert load_file(model_dir / "model.safetensors")  # tensors only: nothing to unpickle
    assert (output / "success").exists() and not (output / "failure").exists()

    for picture in ("training_curves.png", "confusion_matrix.png"):
        with Image.open(output / "data" / picture) as image:
            assert image.format == "PNG"
    metrics = json.loads((output / "data" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    assert metrics["test_acc"] > 0.7  # 500 images a class, 4 epochs: well above chance (0.1)


def test_epoch_lines_are_logged(trained):
    lines = [line for line in trained.logs.splitlines() if "epoch=" in line and "valid_acc=" in line]
    assert len(lines) == 4


def test_no_command_trains_too(docker_client, small_data, tmp_path):
    """SageMaker SDK v3 local mode starts the training image without `train`."""
    run = run_training(docker_client, tmp_path, {"epochs": 1}, {"train": small_data / "valid"}, command=None)
    assert run.exit_code == 0, run.logs[-2000:]
    assert (tmp_path / "model" / "model.safetensors").exists()


def assert_clean_failure(run, *phrases):
    assert run.exit_code != 0
    assert run.failure is not None, "no /opt/ml/output/failure written"
    assert "\n" not in run.failure.strip() and "Traceback" not in run.failure
    for phrase in phrases:
        assert phrase in run.failure
    assert not (run.opt_ml / "model" / "model.safetensors").exists()
    assert not (run.opt_ml / "output" / "success").exists()


def test_missing_train_channel_fails_with_a_reason(docker_client, small_data, tmp_path):
    run = run_training(docker_client, tmp_path, {"epochs": 1}, {"valid": small_data / "valid"})
    assert_clean_failure(run, "'train' channel is missing", "got channels: valid")


@pytest.mark.parametrize(
    "hyperparameters, phrases",
    [
        ({"epochs": 0}, ["epochs=0", "an integer >= 1"]),
        ({"learning_rate": 0.1}, ["Unknown hyperparameter(s) learning_rate", "Allowed:"]),
        ({"model": "resnet9000"}, ["model='resnet9000'", "small_cnn"]),
    ],
)
def test_bad_hyperparameter_fails_before_training(docker_client, small_data, tmp_path, hyperparameters, phrases):
    run = run_training(docker_client, tmp_path, hyperparameters, {"train": small_data / "valid"})
    assert_clean_failure(run, *phrases)
    assert "epoch=1" not in run.logs
