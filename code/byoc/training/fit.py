"""The epoch loop: train, validate, keep the best weights, stop early, checkpoint, honour SIGTERM."""
import logging
import math

from byoc.training import metrics, outputs, pretrained
from byoc.training.engine import EpochMeter, StopSignal, evaluate, train_one_epoch
from byoc.training.errors import Stopped, TrainingError
from byoc.training.progress import Progress, checkpoint
from byoc.training.setup import Job
from byoc.training.watch import ProgressLog, epoch_scalars

logger = logging.getLogger("byoc.training")


def epoch_record(job: Job, progress: Progress, stop: StopSignal) -> dict | None:
    """The finished epoch's figures over all ranks; validation updates the best weights. None when
    a stop request came first (or cut the validation short): the epoch is then validated on resume."""
    whole = progress.meter.summed(job.group.sum)
    record = {"epoch": progress.epoch, "train_loss": whole.loss, "train_acc": whole.accuracy,
              "lr": job.step.optimizer.param_groups[0]["lr"],
              "images_per_sec": whole.seen / max(whole.seconds, 1e-9)}
    if "valid" in job.eval_loaders:
        valid, _ = evaluate(job.model, job.eval_loaders["valid"], job.device, len(job.spec.class_names),
                            job.hp.channels_last, job.group.sum, stop)
        if stop:
            return None
        record.update(valid_loss=valid["loss"], valid_acc=valid["acc"], valid_images=valid["images"])
        if valid["acc"] > progress.best["acc"]:
            progress.best = {"acc": valid["acc"], "epoch": progress.epoch,
                             "model": {k: v.detach().cpu().clone() for k, v in job.model.state_dict().items()}}
    elif stop:
        return None
    return record


def refuse_divergence(hp, record: dict) -> None:
    """A non-finite loss has made the weights NaN or inf: every later epoch, the best-weights choice and
    the model package would be garbage. The loss is summed over ranks, so every rank fails alike."""
    loss = record["train_loss"]
    if math.isfinite(loss):
        return
    raise TrainingError(
        f"Training diverged in epoch {record['epoch']}: the training loss is {loss}, not a finite number, so "
        f"the weights are no longer usable and no model is written. Lower lr (now {hp.lr:g}), or lengthen "
        f"warmup_epochs (now {hp.warmup_epochs:g}) or set clip_grad_norm (now {hp.clip_grad_norm:g}; e.g. 1)."
    )


def patience_over(job: Job, progress: Progress) -> bool:
    patience = job.hp.early_stopping_patience
    if not patience or progress.epoch - 1 - progress.best["epoch"] < patience:
        return False
    logger.info("early stopping: validation accuracy has not improved for %d epochs (best %.4f at epoch %d)",
                patience, progress.best["acc"], progress.best["epoch"])
    return True


def watcher(job: Job, progress: Progress) -> ProgressLog | None:
    """The progress log for this epoch: rank 0 only, every progress_seconds (0: none)."""
    if not job.hp.progress_seconds or not job.group.is_main:
        return None
    seen = progress.meter.seen
    return ProgressLog(job.hp.progress_seconds, progress.epoch, job.hp.epochs, job.steps_per_epoch,
                       seen // max(job.hp.batch_size // job.group.world_size, 1), seen, job.group.world_size,
                       job.board)


def stopped(job: Job, progress: Progress, stop: StopSignal) -> Stopped:
    """A stop request: the checkpoint to resume from (a spot interruption) and, by rank 0, the model
    package and metrics so far, which SageMaker uploads when the job is not resumed (StopTrainingJob,
    MaxRuntimeInSeconds, a tuning job's early stop)."""
    signum = stop.signum
    logger.warning("stop requested (signal %d) in epoch %d after %d of its images: writing the checkpoint, "
                   "model and metrics", signum, progress.epoch, progress.meter.seen * job.group.world_size)
    path = checkpoint(job, progress)
    if job.group.is_main:
        outputs.write_stopped(job, progress, signum)
    return Stopped(signum, path)


def fit(job: Job, progress: Progress, stop: StopSignal) -> None:
    """Train from progress.epoch to the last epoch (or an early stop), then load the best validated
    weights. On a stop request: checkpoint and write what there is, then raise Stopped."""
    hp = job.hp
    job.board.open((progress.epoch - 1) * job.steps_per_epoch + progress.meter.seen * job.group.world_size
                   // max(hp.batch_size, 1))
    try:
        while progress.epoch <= hp.epochs:
            if hp.freeze_backbone_epochs:
                pretrained.set_backbone_frozen(job.model, hp.model, frozen=progress.epoch <= hp.freeze_backbone_epochs)
            job.sampler.set_epoch(progress.epoch, start=progress.meter.seen * job.sampler.world_size)
            record = (train_one_epoch(job.step, job.train_loader, progress.meter, stop, watcher(job, progress))
                      and epoch_record(job, progress, stop))
            if not record:  # a stop request: checkpoint in this epoch (its last step, at most) and leave
                raise stopped(job, progress, stop)
            refuse_divergence(hp, record)
            progress.history.append(record)
            logger.info(metrics.epoch_line(record))
            job.board.scalars(progress.epoch * job.steps_per_epoch, epoch_scalars(record))
            progress.epoch, progress.meter = progress.epoch + 1, EpochMeter()
            if patience_over(job, progress):
                break
            if progress.epoch <= hp.epochs and (progress.epoch - 1) % hp.checkpoint_every == 0:
                checkpoint(job, progress)
    finally:
        job.board.flush()
    outputs.keep_best(job, progress)
