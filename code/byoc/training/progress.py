"""Where a job stands, and how it is saved to and resumed from a checkpoint.

A checkpoint holds the whole job's sums (every rank's share), the weights, the step's
optimiser/scheduler/scaler state and the RNG; rank 0 reads the newest one and sends it to
every rank, each of which carries on with its share.
"""
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from byoc.training import checkpoints
from byoc.training.engine import EpochMeter
from byoc.training.errors import TrainingError
from byoc.training.sampling import mixed_seed
from byoc.training.setup import Job

logger = logging.getLogger("byoc.training")


def no_best() -> dict:
    return {"acc": -1.0, "epoch": 0, "model": None}


@dataclass
class Progress:
    """The epoch under way and its running sums (this rank's), the finished epochs' records, and the
    best validated weights so far (for early stopping and the shipped model)."""

    epoch: int = 1
    meter: EpochMeter = field(default_factory=EpochMeter)
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=no_best)


def checkpoint_state(job: Job, progress: Progress) -> dict:
    whole = progress.meter.scaled(job.group.world_size)  # this rank's share, scaled up to the job's
    return {
        "epoch": progress.epoch, "samples_done": whole.seen, "meter": whole.state(), "history": progress.history,
        "best": progress.best, "architecture": job.hp.model, "class_names": job.spec.class_names,
        "hyperparameters": asdict(job.hp), "model": job.model.state_dict(), **job.step.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }


def checkpoint(job: Job, progress: Progress) -> Path:
    """Rank 0 writes the job's state; every rank returns the checkpoint's path."""
    if not job.group.is_main:
        return job.checkpoint_dir / checkpoints.checkpoint_name(progress.epoch,
                                                                progress.meter.seen * job.group.world_size)
    return checkpoints.save(job.checkpoint_dir, checkpoint_state(job, progress))


def check_same_job(job: Job, state: dict) -> None:
    if state["architecture"] != job.hp.model or state["class_names"] != job.spec.class_names:
        raise TrainingError(
            f"The checkpoint in {job.checkpoint_dir} is for model {state['architecture']} with "
            f"{len(state['class_names'])} classes, not {job.hp.model} with {len(job.spec.class_names)}: "
            "clear the checkpoint location or use the job's original hyperparameters and data."
        )


def resume(job: Job) -> Progress:
    """The job's progress from the newest checkpoint, or a fresh start."""
    group = job.group
    state = group.broadcast(checkpoints.load_latest(job.checkpoint_dir) if group.is_main else None)
    if state is None:
        return Progress()
    check_same_job(job, state)
    job.model.load_state_dict(state["model"])
    job.step.load_state_dict(state)
    if group.world_size == 1:
        torch.set_rng_state(state["torch_rng"])
    else:  # one saved RNG state cannot serve every rank
        torch.manual_seed(mixed_seed(job.hp.seed, group.rank, state["epoch"], state["samples_done"]))
    meter = EpochMeter(**state["meter"]).scaled(1 / group.world_size)  # this rank's share
    logger.info("resumed at epoch %d after %d of its samples", state["epoch"], state["samples_done"])
    return Progress(state["epoch"], meter, list(state["history"]), state["best"])
