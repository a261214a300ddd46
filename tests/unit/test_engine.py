from dataclasses import replace

import torch
from torch import nn

from byoc.contract import Preprocessing
from byoc.training import hyperparameters
from byoc.training.engine import EpochMeter, StopSignal, TrainStep, train_one_epoch
from byoc.training.setup import amp_dtype, make_mix, make_optimizer
from byoc.training.setup import make_step as job_step


def make_step(hp, model=None) -> TrainStep:
    """The job's own step (byoc.training.setup) on a tiny linear model, 100 steps to an epoch, no warmup."""
    torch.manual_seed(0)
    hp = replace(hp, warmup_epochs=0)
    model = model or nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    prep = Preprocessing(8, 8, mean=(0.5,) * 3, std=(0.5,) * 3)
    return job_step(hp, model, prep, torch.device("cpu"), steps_per_epoch=100, num_classes=4)


def batch(n=16):
    generator = torch.Generator().manual_seed(1)
    return (torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=generator),
            torch.randint(0, 4, (n,), generator=generator))


def test_a_step_lowers_the_loss_on_the_same_batch():
    step = make_step(hyperparameters.parse({"lr": 0.1}))
    images, labels = batch()
    first, _ = step(images, labels)
    for _ in range(20):
        last, correct = step(images, labels)
    assert last < first and 0 <= correct <= len(labels)


def test_optimizer_choice():
    model = nn.Linear(2, 2)
    assert isinstance(make_optimizer(hyperparameters.parse({"optimizer": "adamw"}), model), torch.optim.AdamW)
    sgd = make_optimizer(hyperparameters.parse({}), model)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]


def test_label_smoothing_raises_the_loss_of_a_confident_model():
    images, labels = batch()
    plain = make_step(hyperparameters.parse({"lr": 0.1}))
    smooth = make_step(hyperparameters.parse({"lr": 0.1, "label_smoothing": 0.2}))
    for _ in range(30):
        plain_loss, _ = plain(images, labels)
        smooth_loss, _ = smooth(images, labels)
    assert smooth_loss > plain_loss + 0.1


def test_mixup_and_cutmix_mix_inputs_and_targets():
    mix = make_mix(hyperparameters.parse({"mixup_alpha": 0.4, "cutmix_alpha": 1.0}), 4)
    images = torch.randn(8, 3, 8, 8)
    labels = torch.arange(8) % 4
    torch.manual_seed(0)
    mixed, targets = mix(images, labels)
    assert targets.shape == (8, 4) and torch.allclose(targets.sum(1), torch.ones(8))
    assert not torch.equal(mixed, images)
    assert make_mix(hyperparameters.parse({}), 4) is None


def test_gradient_clipping_bounds_the_update():
    hp = hyperparameters.parse({"lr": 1.0, "momentum": 0, "weight_decay": 0, "clip_grad_norm": 0.01})
    step = make_step(hp)
    before = [p.detach().clone() for p in step.model.parameters()]
    step(*batch())
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(step.model.parameters(), before)))
    assert moved <= 0.01 * 1.0 + 1e-6  # lr x clipped gradient norm


def test_a_stop_request_ends_the_epoch_at_a_batch_boundary():
    step, meter, stop = make_step(hyperparameters.parse({})), EpochMeter(), StopSignal()
    loader = [batch(4) for _ in range(5)]
    stop.signum = 15  # as if SIGTERM had arrived
    assert train_one_epoch(step, loader, meter, stop) is False and meter.seen == 0
    stop.signum = None
    assert train_one_epoch(step, loader, meter, stop) is True and meter.seen == 20


def test_mixed_precision_only_on_gpus():
    hp = hyperparameters.parse({})
    assert amp_dtype(hp, torch.device("cpu")) is None
    assert amp_dtype(hyperparameters.parse({"amp": False}), torch.device("cuda")) is None
