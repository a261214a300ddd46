"""Where a job stands, and how it is saved to and resumed from a checkpoint.

A checkpoint holds the whole job's sums (every rank's share), the weights, the step's
optimiser/scheduler/scaler state and the RNG, and what defines the job: its hyperparameters and
how much data an epoch trains on. Rank 0 reads the newest one and sends it to every rank, each
of which carries on with its share, once the checkpoint is known to be this job's.
"""
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from byoc.training import checkpoints, hyperparameters
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
        "hyperparameters": asdict(job.hp), "data": data_identity(job), "model": job.model.state_dict(),
        **job.step.state_dict(), "torch_rng": torch.get_rng_state(),
    }


def data_identity(job: Job) -> dict:
    """How much an epoch trains on: another data set (or cluster shape) is another job."""
    return {"train_images": job.data["channels"]["train"]["images"], "steps_per_epoch": job.steps_per_epoch}


def checkpoint(job: Job, progress: Progress) -> Path:
    """Rank 0 writes the job's state; every rank returns the checkpoint's path."""
    if not job.group.is_main:
        return job.checkpoint_dir / checkpoints.checkpoint_name(progress.epoch,
                                                                progress.meter.seen * job.group.world_size)
    return checkpoints.save(job.checkpoint_dir, checkpoint_state(job, progress))


def differences(job: Job, state: dict) -> dict[str, tuple]:
    """What defines the job and differs between the checkpoint and this job: {what: (then, now)}."""
    changed = hyperparameters.differences(state.get("hyperparameters", {}), job.hp)
    then, now = state.get("data") or {}, data_identity(job)
    changed.update({f"data: {name}": (then[name], now[name]) for name in now
                    if name in then and then[name] != now[name]})
    return changed


def check_same_job(job: Job, state: dict) -> None:
    """A checkpoint of another job fails this one (resume=force continues it with this job's values);
    another architecture or class list can never continue."""
    where = f"The checkpoint in {job.checkpoint_dir}"
    if state["architecture"] != job.hp.model or state["class_names"] != job.spec.class_names:
        raise TrainingError(
            f"{where} is for model {state['architecture']} with {len(state['class_names'])} classes, not "
            f"{job.hp.model} with {len(job.spec.class_names)}: give this job a new checkpoint location "
            "(CheckpointConfig.S3Uri, --checkpoint-s3-uri) or use the original job's hyperparameters and data."
        )
    changed = differences(job, state)
    if not changed:
        return
    listed = ", ".join(f"{name} {then!r} -> {now!r}" for name, (then, now) in changed.items())
    if job.hp.resume == "force":
        logger.warning("resume=force: continuing the checkpoint's job with this job's values: %s", listed)
        return
    raise TrainingError(
        f"{where} belongs to another job: {listed}. Resuming would continue that job's optimiser state and "
        "schedule under the new values. Give this job a new checkpoint location (CheckpointConfig.S3Uri, "
        "--checkpoint-s3-uri), or set the hyperparameter resume=force to continue from it with this job's values."
    )


def load_step(job: Job, state: dict) -> None:
    """The optimiser, schedule and scaler from the checkpoint; with resume=force, this job's
    optimiser settings from here on (a new optimizer starts with fresh state)."""
    saved = state.get("hyperparameters", {})
    if saved.get("optimizer", job.hp.optimizer) != job.hp.optimizer:
        state = {**state, "optimizer": job.step.optimizer.state_dict()}  # SGD's momentum is no AdamW state
    job.step.load_state_dict(state)
    if hyperparameters.differences(saved, job.hp):
        job.step.set_optimizer_settings(job.hp.lr, job.hp.weight_decay, job.hp.momentum)


def resume(job: Job) -> Progress:
    """The job's progress from the newest checkpoint, or a fresh start."""
    group = job.group
    state = group.broadcast(checkpoints.load_latest(job.checkpoint_dir) if group.is_main else None)
    if state is None:
        return Progress()
    check_same_job(job, state)
    job.model.load_state_dict(state["model"])
    load_step(job, state)
    if group.world_size == 1:
        torch.set_rng_state(state["torch_rng"])
    else:  # one saved RNG state cannot serve every rank
        torch.manual_seed(mixed_seed(job.hp.seed, group.rank, state["epoch"], state["samples_done"]))
    meter = EpochMeter(**state["meter"]).scaled(1 / group.world_size)  # this rank's share
    logger.info("resumed at epoch %d after %d of its samples", state["epoch"], state["samples_done"])
    return Progress(state["epoch"], meter, list(state["history"]), state["best"])
