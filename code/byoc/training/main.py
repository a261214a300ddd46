"""The training job: SageMaker's contract in, a model package and metrics out.

sagemaker-training's `train` imports this module (SAGEMAKER_TRAINING_MODULE)
and calls main(); it writes /opt/ml/output/success, or /opt/ml/output/failure
with the message of a TrainingError, and sets the exit code. On SIGTERM the
job checkpoints to /opt/ml/checkpoints and exits 143; the next start resumes.

With several hosts or GPUs (resourceconfig.json, nvidia-smi), main() launches one
training process per GPU (per host on CPUs) that run() as ranks of one DDP job; see
distributed.py. Rank 0 alone writes the model, checkpoints and metrics.
"""
import json
import logging
import os
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch
from sagemaker_training import environment
from torch import nn
from torchvision.transforms import v2

from byoc import model_package
from byoc.model_package import ModelSpec
from byoc.preprocessing import Preprocessing
from byoc.training import checkpoints, data, distributed, hyperparameters, metrics, pretrained, report
from byoc.training.engine import (BatchNormalizer, EpochMeter, StopSignal, TrainStep, cosine_schedule, evaluate,
                                  train_one_epoch)
from byoc.training.errors import TrainingError
from byoc.training.sampling import mixed_seed

logger = logging.getLogger("byoc.training")


class Interrupted(Exception):
    def __init__(self, signum: int, checkpoint: Path):
        super().__init__(f"stopped by signal {signum}; checkpoint {checkpoint}")
        self.signum = signum


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def configure_torch(hp: hyperparameters.Hyperparameters, group: distributed.Solo) -> torch.device:
    torch.manual_seed(hp.seed + group.rank)  # ranks draw different dropout masks
    # OMP_NUM_THREADS wins where set: the compose rehearsal runs several "hosts" on one machine's
    # cores, and spinning OpenMP threads that outnumber the cores slow every one of them down.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0)
                          or max(1, available_cores() // group.local_world_size))
    if hp.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return group.device


def make_optimizer(hp: hyperparameters.Hyperparameters, model: nn.Module) -> torch.optim.Optimizer:
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum,
                           weight_decay=hp.weight_decay, nesterov=hp.momentum > 0)


def make_mix(hp: hyperparameters.Hyperparameters, num_classes: int):
    """torchvision's batch MixUp / CutMix (one of them per batch when both are on)."""
    mixes = []
    if hp.mixup_alpha:
        mixes.append(v2.MixUp(alpha=hp.mixup_alpha, num_classes=num_classes))
    if hp.cutmix_alpha:
        mixes.append(v2.CutMix(alpha=hp.cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def amp_dtype(hp: hyperparameters.Hyperparameters, device: torch.device) -> torch.dtype | None:
    if not hp.amp or device.type != "cuda":
        return None  # CPUs train in fp32: bf16 autocast is slower than fp32 on most of them
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def reduced(meter: EpochMeter, group: distributed.Solo) -> EpochMeter:
    """An epoch's sums over all ranks (the time is this rank's: ranks step together)."""
    loss_sum, correct, seen = group.sum(torch.tensor([meter.loss_sum, meter.correct, meter.seen],
                                                     dtype=torch.float64)).tolist()
    return EpochMeter(loss_sum, int(correct), int(seen), meter.seconds)


def run(env: environment.Environment, stop: StopSignal, group: distributed.Solo | None = None) -> dict:
    group = group or distributed.Solo()
    hp = hyperparameters.parse(env.hyperparameters)
    channels = data.find_channels(env.channel_input_dirs)
    if hp.early_stopping_patience and "valid" not in channels:
        raise hyperparameters.HyperparameterError(
            "Hyperparameter early_stopping_patience needs a 'valid' channel to measure improvement on."
        )
    if hp.batch_size % group.world_size:
        raise hyperparameters.HyperparameterError(
            f"Hyperparameter batch_size={hp.batch_size} is the global batch and must divide evenly over the "
            f"job's {group.world_size} training processes (hosts x GPUs per host)."
        )
    logger.info("hyperparameters: %s", hp)
    logger.info("channels: %s", {name: str(path) for name, path in channels.items()})
    device = configure_torch(hp, group)
    workers = hp.workers or max(1, available_cores() // group.local_world_size)

    prep = Preprocessing(resize_size=hp.resize_size or hp.image_size, crop_size=hp.image_size)
    splits = data.load_splits(channels, prep, cache_bytes=hp.cache_mb * 2**20,
                              max_bad_fraction=hp.max_bad_image_fraction, threads=available_cores())
    classes = splits["train"].classes
    logger.info("classes: %d; images: %s", len(classes), {k: len(v) for k, v in splits.items()})
    spec = ModelSpec(architecture=hp.model, class_names=[data.display_name(c) for c in classes],
                     preprocessing=prep)

    model = spec.build()
    if hp.pretrained_weights:
        pretrained.load_into(model, hp.model, pretrained.find_weights(hp.pretrained_weights, env.channel_input_dirs,
                                                                      env.model_dir))
    model = model.to(device, memory_format=torch.channels_last if hp.channels_last else torch.preserve_format)
    train_loader, sampler = data.train_loader(splits["train"], prep, hp, workers, group.rank, group.world_size)
    eval_loaders = {name: data.eval_loader(group.shard(splits[name]), hp.batch_size, workers)
                    for name in ("valid", "test") if name in splits}
    optimizer = make_optimizer(hp, model)
    steps_per_epoch = len(train_loader)
    total_steps = hp.epochs * steps_per_epoch
    scheduler = cosine_schedule(optimizer, total_steps, warmup_steps=round(hp.warmup_epochs * steps_per_epoch))
    dtype = amp_dtype(hp, device)
    trained = group.wrap(model, find_unused_parameters=hp.freeze_backbone_epochs > 0)  # DDP with >1 process
    step = TrainStep(
        model=torch.compile(trained) if hp.compile else trained,
        normalize=BatchNormalizer(prep.mean, prep.std, device, hp.channels_last),
        optimizer=optimizer, scheduler=scheduler,
        device=device, loss_fn=nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing),
        mix=make_mix(hp, len(classes)), clip_grad_norm=hp.clip_grad_norm, amp_dtype=dtype,
        scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None,
    )
    logger.info("device %s, mixed precision %s, %d steps per epoch", device, dtype, steps_per_epoch)

    checkpoint_dir = Path(environment.base_dir) / "checkpoints"
    epoch, meter, history = 1, EpochMeter(), []
    best = {"acc": -1.0, "epoch": 0, "model": None}  # by validation accuracy, for early stopping
    state = group.broadcast(checkpoints.load_latest(checkpoint_dir) if group.is_main else None)
    if state is not None:
        if state["architecture"] != hp.model or state["class_names"] != spec.class_names:
            raise TrainingError(
                f"The checkpoint in {checkpoint_dir} is for model {state['architecture']} with "
                f"{len(state['class_names'])} classes, not {hp.model} with {len(classes)}: "
                "clear the checkpoint location or use the job's original hyperparameters and data."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if step.scaler is not None and state.get("scaler"):
            step.scaler.load_state_dict(state["scaler"])
        if group.world_size == 1:
            torch.set_rng_state(state["torch_rng"])
        else:  # one saved RNG state cannot serve every rank
            torch.manual_seed(mixed_seed(hp.seed, group.rank, state["epoch"], state["samples_done"]))
        epoch, history, best = state["epoch"], list(state["history"]), state["best"]
        # The checkpoint holds the whole job's sums; each rank carries on with its share.
        meter = EpochMeter(**{k: v / group.world_size if k != "seconds" else v for k, v in state["meter"].items()})
        meter.correct, meter.seen = round(meter.correct), round(meter.seen)
        logger.info("resumed at epoch %d after %d of its samples", epoch, meter.seen * group.world_size)

    def checkpoint(at_epoch: int, current: EpochMeter) -> Path:
        whole = EpochMeter(current.loss_sum * group.world_size, current.correct * group.world_size,
                           current.seen * group.world_size, current.seconds)  # rank 0's share, scaled up
        path = checkpoint_dir / checkpoints.checkpoint_name(at_epoch, whole.seen)
        if not group.is_main:
            return path
        return checkpoints.save(checkpoint_dir, {
            "epoch": at_epoch, "samples_done": whole.seen, "meter": whole.state(), "history": history,
            "best": best, "architecture": hp.model, "class_names": spec.class_names,
            "hyperparameters": asdict(hp), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": step.scaler.state_dict() if step.scaler else {},
            "torch_rng": torch.get_rng_state(),
        })

    while epoch <= hp.epochs:
        if hp.freeze_backbone_epochs:
            pretrained.set_backbone_frozen(model, hp.model, frozen=epoch <= hp.freeze_backbone_epochs)
        sampler.set_epoch(epoch, start=meter.seen * group.world_size)
        if not train_one_epoch(step, train_loader, meter, stop):
            raise Interrupted(stop.signum, checkpoint(epoch, meter))
        whole = reduced(meter, group)
        record = {"epoch": epoch, "train_loss": whole.loss, "train_acc": whole.accuracy,
                  "lr": optimizer.param_groups[0]["lr"], "images_per_sec": whole.seen / max(whole.seconds, 1e-9)}
        if "valid" in eval_loaders:
            valid, _ = evaluate(model, eval_loaders["valid"], device, len(classes), hp.channels_last, group.sum)
            record.update(valid_loss=valid["loss"], valid_acc=valid["acc"])
            if valid["acc"] > best["acc"]:
                best = {"acc": valid["acc"], "epoch": epoch,
                        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        history.append(record)
        logger.info(metrics.epoch_line(record))
        epoch, meter = epoch + 1, EpochMeter()
        patience_over = hp.early_stopping_patience and epoch - 1 - best["epoch"] >= hp.early_stopping_patience
        if patience_over:
            logger.info("early stopping: validation accuracy has not improved for %d epochs (best %.4f at "
                        "epoch %d)", hp.early_stopping_patience, best["acc"], best["epoch"])
            break
        if stop or (epoch <= hp.epochs and (epoch - 1) % hp.checkpoint_every == 0):
            path = checkpoint(epoch, meter)
            if stop:
                raise Interrupted(stop.signum, path)

    if best["model"] is not None:  # with a validation set, ship the epoch that validated best
        model.load_state_dict(best["model"])
        logger.info("keeping the weights of epoch %d (validation accuracy %.4f)", best["epoch"], best["acc"])

    results = {"epochs": history}
    if "test" in eval_loaders:
        test, confusion = evaluate(model, eval_loaders["test"], device, len(classes), hp.channels_last, group.sum)
        per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
        results.update(test_loss=test["loss"], test_acc=test["acc"],
                       test_per_class_acc=dict(zip(spec.class_names, per_class)),
                       test_confusion=confusion.tolist())
        logger.info(metrics.final_line(results))

    if not group.is_main:  # the model and metrics are written once, by rank 0
        return results
    model_package.save(model, spec, env.model_dir)
    output = Path(env.output_data_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    if history:
        report.training_curves(history, output / "training_curves.png")
    if "test_confusion" in results:
        report.confusion_matrix(results["test_confusion"], spec.class_names, output / "confusion_matrix.png")
    logger.info("model written to %s, metrics to %s", env.model_dir, output / "metrics.json")
    return results


def clear_previous_outcome(output_dir: str) -> None:
    """A rerun over the same local /opt/ml tree must not inherit the last run's verdict."""
    for name in ("success", "failure"):
        Path(output_dir, name).unlink(missing_ok=True)


def configure_logging(prefix: str = "") -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s",
                        force=True)


def main() -> None:
    configure_logging()
    start = time.time()
    stop = StopSignal()
    try:
        env = environment.Environment()
        clear_previous_outcome(env.output_dir)
        cluster = distributed.Cluster.from_environment(env)
        if cluster.world_size == 1:
            run(env, stop)
        else:  # validate here, so bad hyperparameters fail every host before any waits for another
            hp = hyperparameters.parse(env.hyperparameters)
            distributed.launch(cluster, hp.distributed_timeout, distributed_worker)
    except (Interrupted, distributed.Stopped) as interrupted:
        # Neither success nor failure: the job is to be resumed. Exit here, because
        # sagemaker-training would otherwise end the process with status 0.
        logger.warning("training %s; the next start resumes from it", interrupted)
        logging.shutdown()
        os._exit(128 + interrupted.signum)
    except TrainingError:
        raise
    except Exception as error:  # the log keeps the traceback; the failure file gets one paragraph
        logger.error("training failed:\n%s", traceback.format_exc())
        raise TrainingError(
            f"Training failed with an unexpected {type(error).__name__}: {error}. "
            "The job's log has the full traceback."
        ) from error
    logger.info("training finished in %.1f s", time.time() - start)


def distributed_worker() -> None:
    """One rank of a multi-process job (started by distributed.launch in a fresh process)."""
    configure_logging(f"[rank {os.environ['RANK']}] ")
    stop = StopSignal()
    group = None
    try:
        env = environment.Environment()
        timeout = hyperparameters.parse(env.hyperparameters).distributed_timeout
        group = distributed.ProcessGroup(timeout)
        run(env, distributed.SharedStop(stop, group), group)
        group.close()
    except Interrupted as interrupted:
        logger.warning("training %s", interrupted)
        raise SystemExit(128 + interrupted.signum) from None
    except TrainingError as error:
        distributed.record_failure(str(error))
        raise SystemExit(1) from None
    except Exception as error:
        logger.error("training failed:\n%s", traceback.format_exc())
        reason = distributed.peer_failure(error, timeout) if group else None
        distributed.record_failure(reason or f"Training failed with an unexpected {type(error).__name__}: "
                                             f"{' '.join(str(error).split())[:600]}. The job's log has the full "
                                             "traceback.")
        raise SystemExit(1) from None
