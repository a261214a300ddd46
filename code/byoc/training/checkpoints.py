"""Spot-safe checkpoints in /opt/ml/checkpoints (SageMaker syncs that folder to S3), or in the
LocalPath the job's CheckpointConfig names (input/config/checkpointconfig.json; preflight.local_path).

Each checkpoint is written to a temporary file, flushed to disk, then renamed
into place, so a crash mid-write never leaves a file that looks complete. On
start the newest checkpoint that loads is used; damaged ones are skipped, each with a warning: what
a spot user expects, since the rename means only damage after the write (a partial S3 sync, a
copy by hand) makes a newest one unreadable, and the job keeps KEEP of them for that. A file by our
name that holds no resume state (a user's state_dict) is skipped the same way.
Loading uses weights_only=True: tensors and plain values, never arbitrary objects.

A hyperparameter tuning job gives all its trials one CheckpointConfig, so SageMaker starts every
trial with every other trial's checkpoints in /opt/ml/checkpoints. A trial (SageMaker adds
_tuning_objective_metric to its hyperparameters) therefore keeps its checkpoints in a folder
named after its own training job: a spot restart of the trial finds them, its siblings never
do; and once the trial has succeeded it deletes that folder (SageMaker deletes it in S3 too),
so later trials do not download finished ones.
"""
import logging
import os
import re
import shutil
from pathlib import Path

import torch

logger = logging.getLogger(__name__)
PATTERN = re.compile(r"^checkpoint-e(\d{4})-s(\d{9})\.pt$")
KEEP = 2
TUNING_KEY = "_tuning_objective_metric"
# What a resume reads from a checkpoint (byoc.training.progress.resume, checkpoint_state).
REQUIRED = frozenset({"epoch", "samples_done", "meter", "history", "best", "architecture", "class_names", "model",
                      "optimizer", "scheduler", "torch_rng"})


def job_directory(root: Path, hyperparameters: dict, job_name: str | None) -> Path:
    """Where this job's checkpoints live: root, or root/<training job name> for a tuning trial."""
    if TUNING_KEY in hyperparameters and job_name:
        return Path(root) / job_name
    return Path(root)


def discard(directory: Path) -> None:
    """A finished trial's checkpoints are of no further use (its model is in the model package)."""
    shutil.rmtree(directory, ignore_errors=True)
    logger.info("trial finished: removed its checkpoints in %s", directory)


def checkpoint_name(epoch: int, samples_done: int) -> str:
    return f"checkpoint-e{epoch:04d}-s{samples_done:09d}.pt"


def _candidates(directory: Path) -> list[Path]:
    found = [(tuple(map(int, m.groups())), p) for p in directory.glob("checkpoint-*.pt")
             if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save(directory: Path, state: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(state["epoch"], state["samples_done"])
    temporary = directory / f".{path.name}.partial"
    with open(temporary, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)  # make the rename itself durable
    finally:
        os.close(directory_fd)
    for old in _candidates(directory)[KEEP:]:
        old.unlink(missing_ok=True)
    logger.info("checkpoint written: %s", path)
    return path


def load_latest(directory: Path) -> dict | None:
    if not directory.is_dir():
        return None
    for path in _candidates(directory):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged file: fall back to an older one
            logger.warning("skipping unreadable checkpoint %s: %s", path, error)
            continue
        lacking = sorted(REQUIRED - set(state)) if isinstance(state, dict) else ["a dict of them"]
        if lacking:  # a file of tensors by our name (a user's state_dict, another tool's): no resume point
            logger.warning("skipping %s: not a checkpoint of this job's kind (it lacks %s)", path, ", ".join(lacking))
            continue
        logger.info("resuming from %s", path)
        return state
    if _candidates(directory):
        logger.warning("no checkpoint in %s could be used (above): starting from the beginning", directory)
    return None
