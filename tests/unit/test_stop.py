"""A stop request at any point of a job, on the host with a tiny job: it is honoured at the next
batch (training or evaluation), leaves a checkpoint and the model so far, and a resumed job ends
where an uninterrupted one does."""
import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from byoc.training import hyperparameters, outputs, setup
from byoc.training.errors import Stopped
from byoc.training.fit import fit
from byoc.training.progress import resume


class Stop:
    """A stop request that arrives when the test says (SIGTERM's flag, without the signal)."""

    signum = 15

    def __init__(self):
        self.requested = False

    def __bool__(self) -> bool:
        return self.requested

    @property
    def requested_here(self) -> bool:
        return self.requested


class ArrivesDuring:
    """An evaluation loader during which the stop request arrives (after its first batch)."""

    def __init__(self, loader, stop):
        self.loader, self.stop = loader, stop

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            self.stop.requested = index >= 1
            yield batch


@pytest.fixture
def tiny(small_data, tmp_path):
    data = tmp_path / "data"
    for split, count in (("train", 40), ("valid", 20), ("test", 20)):
        for folder in sorted((small_data / split).iterdir())[:3]:
            (data / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.glob("*.png"))[:count]:
                shutil.copy(image, data / split / folder.name / image.name)
    return data


def make_job(tiny, root: Path) -> setup.Job:
    env = SimpleNamespace(channel_input_dirs={name: str(tiny / name) for name in ("train", "valid", "test")},
                          input_data_config={}, model_dir=str(root / "model"), output_dir=str(root / "output"),
                          output_data_dir=str(root / "output/data"), current_host="algo-1", job_name=None)
    hp = hyperparameters.parse({"epochs": 2, "batch_size": 16, "workers": 0, "deterministic": True,
                                "progress_seconds": 0})
    job = setup.build_job(env, hp, setup.distributed.SingleProcess(torch.device("cpu")))
    return replace(job, checkpoint_dir=root / "checkpoints")


def test_a_stop_during_validation_checkpoints_the_trained_epoch_and_resumes_to_the_same_end(tiny, tmp_path):
    reference = make_job(tiny, tmp_path / "reference")
    fit(reference, resume(reference), Stop())

    job, stop = make_job(tiny, tmp_path / "stopped"), Stop()
    job.eval_loaders["valid"] = ArrivesDuring(job.eval_loaders["valid"], stop)
    with pytest.raises(Stopped):
        fit(job, resume(job), stop)
    written = json.loads((tmp_path / "stopped/output/data/metrics.json").read_text())
    assert written["epochs"] == [] and written["stopped"]["epoch"] == 1
    assert written["stopped"]["epoch_images_done"] == 112  # the whole epoch: 7 steps of 16
    assert written["stopped"]["model"] == {"weights": "current", "epoch": 1, "epoch_images_done": 112}
    assert (tmp_path / "stopped/model/model.safetensors").exists()

    again = make_job(tiny, tmp_path / "stopped")
    progress = resume(again)
    assert (progress.epoch, progress.meter.seen) == (1, 112)  # the epoch is validated now, not retrained
    fit(again, progress, Stop())
    assert [e["epoch"] for e in progress.history] == [1, 2]
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name


def test_a_stop_during_the_test_pass_keeps_the_model_without_test_figures(tiny, tmp_path):
    job, stop = make_job(tiny, tmp_path), Stop()
    progress = resume(job)
    fit(job, progress, stop)
    job.eval_loaders["test"] = ArrivesDuring(job.eval_loaders["test"], stop)
    found = outputs.results(job, progress, stop)
    assert "test_acc" not in found and found["stopped"]["during"] == "the test pass"
    assert found["stopped"]["model"]["weights"] == "best_validated"


def test_a_stop_before_the_first_step_writes_no_model(tiny, tmp_path):
    job, stop = make_job(tiny, tmp_path), Stop()
    stop.requested = True
    with pytest.raises(Stopped):
        fit(job, resume(job), stop)
    assert not (tmp_path / "model/model.safetensors").exists()
    assert json.loads((tmp_path / "output/data/metrics.json").read_text())["stopped"]["model"] is None
