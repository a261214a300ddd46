"""One training epoch and one evaluation pass."""
import math
import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    images: int
    seconds: float


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(model: nn.Module, loader, optimizer, scheduler, device: torch.device) -> EpochResult:
    model.train()
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    return EpochResult(loss_sum / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, num_classes: int) -> tuple[EpochResult, torch.Tensor]:
    """Loss, accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, seen, start = 0.0, 0, time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        predicted = logits.argmax(1)
        confusion += torch.bincount(
            (labels * num_classes + predicted).cpu(), minlength=num_classes * num_classes
        ).reshape(num_classes, num_classes)
        seen += len(labels)
    accuracy = confusion.diag().sum().item() / max(seen, 1)
    return EpochResult(loss_sum / max(seen, 1), accuracy, seen, time.perf_counter() - start), confusion
