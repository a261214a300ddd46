"""A job whose loss stops being a finite number fails with a reason instead of shipping NaN weights."""
import shutil
from types import SimpleNamespace

import pytest
import torch

from byoc.training import hyperparameters, setup
from byoc.training.errors import TrainingError
from byoc.training.fit import fit, refuse_divergence
from byoc.training.progress import resume


class NoStop:
    """A stop request that never comes."""

    signum, requested_here = None, False

    def __bool__(self) -> bool:
        return False


def small_job(small_data, root):
    for split in ("train", "valid"):
        for folder in sorted((small_data / split).iterdir())[:2]:
            (root / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.glob("*.png"))[:16]:
                shutil.copy(image, root / split / folder.name / image.name)
    env = SimpleNamespace(channel_input_dirs={name: str(root / name) for name in ("train", "valid")},
                          input_data_config={}, model_dir=str(root / "model"), output_dir=str(root / "output"),
                          output_data_dir=str(root / "output/data"), current_host="algo-1", job_name=None)
    hp = hyperparameters.parse({"epochs": 2, "batch_size": 16, "workers": 0, "progress_seconds": 0})
    return setup.build_job(env, hp, setup.distributed.SingleProcess(torch.device("cpu")))


def test_a_nan_loss_fails_the_job_in_its_epoch_and_writes_no_model(small_data, tmp_path):
    job = small_job(small_data, tmp_path)
    with torch.no_grad():
        next(job.model.parameters()).fill_(float("nan"))  # what lr=1e30 does after a step or two
    with pytest.raises(TrainingError, match=r"Training diverged in epoch 1: the training loss is nan.*Lower lr"):
        fit(job, resume(job), NoStop())
    assert not (tmp_path / "model/model.safetensors").exists()


@pytest.mark.parametrize("loss", [float("inf"), float("-inf"), float("nan")])
def test_only_a_finite_loss_passes(loss):
    hp = hyperparameters.Hyperparameters()
    refuse_divergence(hp, {"epoch": 3, "train_loss": 2.3})
    with pytest.raises(TrainingError, match="epoch 3") as error:
        refuse_divergence(hp, {"epoch": 3, "train_loss": loss})
    assert "\n" not in str(error.value)
