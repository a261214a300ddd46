"""Resuming from a checkpoint: only the same job continues (same architecture, classes, defining
hyperparameters and data); resume=force continues another job's checkpoint with this job's values."""
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from byoc.contract import Preprocessing
from byoc.training import hyperparameters, progress
from byoc.training.errors import TrainingError
from byoc.training.setup import make_step

CLASSES = ["T-shirt top", "Trouser", "Pullover"]


def job(hp=None, images=5000, steps=78, classes=CLASSES, step=None):
    """What check_same_job and load_step read of a Job."""
    hp = hp or hyperparameters.parse({})
    return SimpleNamespace(hp=hp, spec=SimpleNamespace(class_names=classes), checkpoint_dir=Path("/opt/ml/checkpoints"),
                           data={"channels": {"train": {"images": images}}, "steps_per_epoch": steps},
                           steps_per_epoch=steps, step=step)


def saved(of) -> dict:
    """The identity a checkpoint of job `of` carries."""
    return {"architecture": of.hp.model, "class_names": of.spec.class_names, "hyperparameters": asdict(of.hp),
            "data": progress.data_identity(of)}


def test_the_same_job_resumes_whatever_its_operational_settings():
    first = job(hyperparameters.parse({"lr": 0.1, "workers": 2, "cache_mb": 10}))
    again = job(hyperparameters.parse({"lr": "0.1", "workers": 4, "cache_mb": 0, "checkpoint_every": 3,
                                       "distributed_timeout": 60, "progress_seconds": 0, "tensorboard": True}))
    progress.check_same_job(again, saved(first))  # no error


def test_another_jobs_checkpoint_is_refused_naming_each_difference():
    first = job(hyperparameters.parse({"lr": 0.1, "epochs": 3}))
    other = job(hyperparameters.parse({"lr": 0.05, "epochs": 5, "workers": 3}), images=4000, steps=62)
    with pytest.raises(TrainingError) as error:
        progress.check_same_job(other, saved(first))
    message = str(error.value)
    assert message.startswith("The checkpoint in /opt/ml/checkpoints belongs to another job: ")
    for named in ("epochs 3 -> 5", "lr 0.1 -> 0.05", "data: train_images 5000 -> 4000",
                  "data: steps_per_epoch 78 -> 62", "new checkpoint location", "resume=force"):
        assert named in message, message
    assert "workers" not in message and "\n" not in message


def test_a_checkpoint_from_an_older_image_compares_what_it_has():
    state = saved(job())
    del state["data"]
    state["hyperparameters"].pop("label_smoothing")  # a field the older image did not have: its default
    progress.check_same_job(job(images=1), state)
    with pytest.raises(TrainingError, match="label_smoothing 0.0 -> 0.1"):
        progress.check_same_job(job(hyperparameters.parse({"label_smoothing": 0.1})), state)


def test_resume_force_continues_another_job():
    first = job(hyperparameters.parse({"lr": 0.1}))
    progress.check_same_job(job(hyperparameters.parse({"lr": 0.05, "resume": "force"})), saved(first))


def test_another_architecture_or_class_list_is_refused_even_when_forced():
    first = job()
    with pytest.raises(TrainingError, match="is for model small_cnn with 3 classes, not small_cnn with 2"):
        progress.check_same_job(job(hyperparameters.parse({"resume": "force"}), classes=CLASSES[:2]), saved(first))


def tiny_step(hp):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    return make_step(replace(hp, warmup_epochs=0), model, Preprocessing(8, 8), torch.device("cpu"),
                     steps_per_epoch=10, num_classes=3)


def trained_state(hp) -> dict:
    step = tiny_step(hp)
    images, labels = torch.randint(0, 256, (6, 8, 8, 3), dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(4):
        step(images, labels)
    return {**step.state_dict(), "hyperparameters": asdict(hp)}


def test_forced_values_apply_from_the_resumed_step_on():
    old = hyperparameters.parse({"lr": 0.1, "momentum": 0.9, "epochs": 2})
    new = hyperparameters.parse({"lr": 0.02, "momentum": 0.5, "weight_decay": 0.001, "epochs": 4, "resume": "force"})
    state = trained_state(old)
    resumed = job(new, step=tiny_step(new))
    progress.load_step(resumed, state)
    group = resumed.step.optimizer.param_groups[0]
    schedule = resumed.step.scheduler
    assert schedule.last_epoch == 4 and schedule.base_lrs == [0.02]
    assert group["lr"] == pytest.approx(0.02 * schedule.lr_lambdas[0](4))  # the new peak, 4 steps into 40
    assert (group["momentum"], group["weight_decay"]) == (0.5, 0.001)
    saved_buffer = state["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(resumed.step.optimizer.state[group["params"][0]]["momentum_buffer"], saved_buffer)


def test_the_same_jobs_optimiser_state_is_restored_untouched():
    hp = hyperparameters.parse({"lr": 0.1})
    state = trained_state(hp)
    resumed = job(hp, step=tiny_step(hp))
    progress.load_step(resumed, state)
    assert resumed.step.optimizer.param_groups[0]["lr"] == state["optimizer"]["param_groups"][0]["lr"]


def test_a_forced_new_optimizer_starts_with_fresh_state():
    state = trained_state(hyperparameters.parse({"optimizer": "sgd"}))
    new = hyperparameters.parse({"optimizer": "adamw", "lr": 0.001, "resume": "force"})
    resumed = job(new, step=tiny_step(new))
    progress.load_step(resumed, state)
    assert resumed.step.scheduler.last_epoch == 4 and not resumed.step.optimizer.state
    resumed.step(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), torch.tensor([0, 1]))  # and it trains
