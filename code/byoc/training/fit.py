"""The epoch loop: train, validate, keep the best weights, stop early, checkpoint, honour SIGTERM."""
import logging

from byoc.training import metrics, pretrained
from byoc.training.engine import EpochMeter, StopSignal, evaluate, train_one_epoch
from byoc.training.errors import Stopped
from byoc.training.progress import Progress, checkpoint
from byoc.training.setup import Job

logger = logging.getLogger("byoc.training")


def epoch_record(job: Job, progress: Progress) -> dict:
    """The finished epoch's figures over all ranks; validation updates the best weights."""
    whole = progress.meter.summed(job.group.sum)
    record = {"epoch": progress.epoch, "train_loss": whole.loss, "train_acc": whole.accuracy,
              "lr": job.step.optimizer.param_groups[0]["lr"],
              "images_per_sec": whole.seen / max(whole.seconds, 1e-9)}
    if "valid" in job.eval_loaders:
        valid, _ = evaluate(job.model, job.eval_loaders["valid"], job.device, len(job.spec.class_names),
                            job.hp.channels_last, job.group.sum)
        record.update(valid_loss=valid["loss"], valid_acc=valid["acc"])
        if valid["acc"] > progress.best["acc"]:
            progress.best = {"acc": valid["acc"], "epoch": progress.epoch,
                             "model": {k: v.detach().cpu().clone() for k, v in job.model.state_dict().items()}}
    return record


def patience_over(job: Job, progress: Progress) -> bool:
    patience = job.hp.early_stopping_patience
    if not patience or progress.epoch - 1 - progress.best["epoch"] < patience:
        return False
    logger.info("early stopping: validation accuracy has not improved for %d epochs (best %.4f at epoch %d)",
                patience, progress.best["acc"], progress.best["epoch"])
    return True


def fit(job: Job, progress: Progress, stop: StopSignal) -> None:
    """Train from progress.epoch to the last epoch (or an early stop), then load the best validated
    weights. On a stop request: checkpoint, then raise Stopped."""
    hp = job.hp
    while progress.epoch <= hp.epochs:
        if hp.freeze_backbone_epochs:
            pretrained.set_backbone_frozen(job.model, hp.model, frozen=progress.epoch <= hp.freeze_backbone_epochs)
        job.sampler.set_epoch(progress.epoch, start=progress.meter.seen * job.group.world_size)
        if not train_one_epoch(job.step, job.train_loader, progress.meter, stop):
            raise Stopped(stop.signum, checkpoint(job, progress))
        record = epoch_record(job, progress)
        progress.history.append(record)
        logger.info(metrics.epoch_line(record))
        progress.epoch, progress.meter = progress.epoch + 1, EpochMeter()
        if patience_over(job, progress):
            break
        if stop or (progress.epoch <= hp.epochs and (progress.epoch - 1) % hp.checkpoint_every == 0):
            path = checkpoint(job, progress)
            if stop:
                raise Stopped(stop.signum, path)
    if progress.best["model"] is not None:  # with a validation set, ship the epoch that validated best
        job.model.load_state_dict(progress.best["model"])
        logger.info("keeping the weights of epoch %d (validation accuracy %.4f)", progress.best["epoch"],
                    progress.best["acc"])
