"""Training epochs that can stop at any batch, and evaluation passes."""
import math
import signal
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class EpochMeter:
    """Running sums for one training epoch; part of a checkpoint, so a resumed epoch reports whole."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    def state(self) -> dict:
        return asdict(self)

    def summed(self, sum_over_ranks) -> "EpochMeter":
        """The sums over all ranks (the time is this rank's: ranks step together)."""
        loss_sum, correct, seen = sum_over_ranks(
            torch.tensor([self.loss_sum, self.correct, self.seen], dtype=torch.float64)).tolist()
        return EpochMeter(loss_sum, int(correct), int(seen), self.seconds)

    def scaled(self, factor: float) -> "EpochMeter":
        """The sums times factor: one rank's share -> the whole job's (or back, with 1 / ranks)."""
        return EpochMeter(self.loss_sum * factor, round(self.correct * factor), round(self.seen * factor),
                          self.seconds)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1)


class StopSignal:
    """Remembers SIGTERM (spot interruption, docker stop) so training checkpoints and exits."""

    def __init__(self):
        self.signum: int | None = None
        signal.signal(signal.SIGTERM, self._record)

    def _record(self, signum, _frame) -> None:
        self.signum = signum

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def requested_here(self) -> bool:
        """This process's own flag, without asking the others (see distributed.SharedStop)."""
        return self.signum is not None


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class BatchNormalizer:
    """(B, H, W, 3) uint8 on any device -> normalised float (B, 3, H, W) on `device`.

    Permuting NHWC memory gives the channels_last layout for free; the contiguous()
    copy is only made when a model wants classic NCHW.
    """

    def __init__(self, mean, std, device: torch.device, channels_last: bool):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.device, self.channels_last = device, channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        images = (images - self.mean) / self.std
        return images if self.channels_last else images.contiguous()


@dataclass
class TrainStep:
    """One optimisation step with the job's options: mixed precision, MixUp/CutMix, clipping."""

    model: nn.Module  # possibly torch.compile'd
    normalize: BatchNormalizer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    loss_fn: nn.Module
    mix: object | None = None  # torchvision MixUp/CutMix on (images, labels), or None
    clip_grad_norm: float = 0.0
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None  # only for fp16

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue this step's optimisation exactly."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {}}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def set_optimizer_settings(self, lr: float, weight_decay: float, momentum: float) -> None:
        """A new peak lr (the schedule carries on from its step), weight decay and SGD momentum:
        a resumed job told to continue with its own values (resume=force)."""
        self.scheduler.base_lrs = [lr] * len(self.optimizer.param_groups)
        for group, factor in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas):
            group.update(initial_lr=lr, lr=lr * factor(self.scheduler.last_epoch), weight_decay=weight_decay)
            if "nesterov" in group:
                group.update(momentum=momentum, nesterov=momentum > 0)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        images = self.normalize(images)
        labels = labels.to(self.device, non_blocking=True)
        targets = labels
        if self.mix is not None:
            images, targets = self.mix(images, labels)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.model(images)
            loss = self.loss_fn(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        correct = (logits.argmax(1) == labels).sum().item()  # against the unmixed labels
        return loss.item(), correct


def train_one_epoch(step: TrainStep, loader, meter: EpochMeter, stop: StopSignal, after_batch=None) -> bool:
    """Train until the loader is exhausted (True) or a stop is requested (False).
    `after_batch(meter)`, if given, runs after each step (the progress log)."""
    step.model.train()
    start = time.perf_counter()
    try:
        for images, labels in loader:
            if stop:
                return False
            loss, correct = step(images, labels)
            meter.loss_sum += loss * len(labels)
            meter.correct += correct
            meter.seen += len(labels)
            if after_batch is not None:
                after_batch(meter)
        return not stop
    finally:
        meter.seconds += time.perf_counter() - start


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, num_classes: int,
             channels_last: bool = False, reduce=_unchanged, stop=None) -> tuple[dict, torch.Tensor]:
    """Loss, accuracy and the confusion matrix (rows: true class, columns: predicted).
    `reduce` sums the counts over the ranks that each evaluated a shard. A stop request
    (stop.requested_here) ends the pass early, so a stop never waits for a long evaluation:
    callers then ask `stop` (all ranks) and drop the figures."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, seen = 0.0, 0
    for images, labels in loader:
        if stop is not None and stop.requested_here:
            break
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        confusion += torch.bincount(
            (labels * num_classes + logits.argmax(1)).cpu(), minlength=num_classes * num_classes
        ).reshape(num_classes, num_classes)
        seen += len(labels)
    loss_sum, seen = reduce(torch.tensor([loss_sum, seen], dtype=torch.float64)).tolist()
    confusion = reduce(confusion)
    return {"loss": loss_sum / max(seen, 1), "acc": confusion.diag().sum().item() / max(seen, 1),
            "images": int(seen)}, confusion
