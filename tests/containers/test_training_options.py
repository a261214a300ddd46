"""Options that change what a job does: fine-tuning from a weights file, early stopping, torch.compile."""
import json
import shutil

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from support import run_training

pytestmark = pytest.mark.docker


@pytest.fixture
def three_classes(small_data, tmp_path):
    """30 images of each of three classes, for jobs where the model is the point, not the data."""
    root = tmp_path / "three"
    for folder in sorted((small_data / "valid").iterdir())[:3]:
        shutil.copytree(folder, root / folder.name)
    return root


def test_resnet50_fine_tunes_from_a_weights_file_with_a_frozen_backbone(docker_client, three_classes, tmp_path):
    torch.manual_seed(3)
    weights = tmp_path / "pretrained"
    weights.mkdir()
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights / "resnet50-imagenet.pth")
    run = run_training(
        docker_client, tmp_path / "job",
        {"model": "resnet50", "pretrained_weights": "resnet50-imagenet.pth", "freeze_backbone_epochs": 1,
         "epochs": 1, "image_size": 32, "batch_size": 30},
        {"train": three_classes, "pretrained": weights},
    )
    assert run.exit_code == 0, run.logs[-3000:]
    assert "loaded pretrained weights from /opt/ml/input/data/pretrained/resnet50-imagenet.pth" in run.logs
    trained = load_file(tmp_path / "job/model/model.safetensors")
    source = torch.load(weights / "resnet50-imagenet.pth", weights_only=True)
    assert torch.equal(trained["conv1.weight"], source["conv1.weight"])  # frozen: untouched
    assert torch.equal(trained["layer3.0.conv2.weight"], source["layer3.0.conv2.weight"])
    assert trained["fc.weight"].shape == (3, 2048)


def test_requested_weights_that_are_missing_fail_the_job_clearly(docker_client, three_classes, tmp_path):
    run = run_training(docker_client, tmp_path, {"model": "resnet50", "pretrained_weights": "nope.pth", "epochs": 1},
                       {"train": three_classes})
    assert run.exit_code != 0
    assert "Pretrained weights 'nope.pth' were requested" in run.failure and "Traceback" not in run.failure


def test_early_stopping_ends_the_job_when_validation_stops_improving(docker_client, three_classes, tmp_path):
    # A learning rate so small that validation accuracy cannot change after the first epoch.
    run = run_training(docker_client, tmp_path,
                       {"epochs": 6, "lr": 1e-9, "early_stopping_patience": 1, "warmup_epochs": 0},
                       {"train": three_classes, "valid": three_classes})
    assert run.exit_code == 0, run.logs[-3000:]
    assert "early stopping: validation accuracy has not improved for 1 epochs" in run.logs
    metrics = json.loads((tmp_path / "output/data/metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]


def test_compile_trains_an_epoch_on_the_cpu(docker_client, three_classes, tmp_path):
    """compile=true builds inductor's C++ kernels while the job runs: the image carries a compiler
    and Python's headers (without them the first step fails: inductor's InvalidCxxCompiler)."""
    run = run_training(docker_client, tmp_path, {"compile": True, "epochs": 1, "batch_size": 30},
                       {"train": three_classes, "valid": three_classes})
    assert run.exit_code == 0, (run.failure or "") + run.logs[-3000:]
    metrics = json.loads((tmp_path / "output/data/metrics.json").read_text())
    assert metrics["hyperparameters"]["compile"] is True and [e["epoch"] for e in metrics["epochs"]] == [1]
    assert metrics["epochs"][0]["train_loss"] > 0 and (tmp_path / "model/model.safetensors").is_file()
