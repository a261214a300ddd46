"""The training job: SageMaker's contract in, a model package and metrics out.

sagemaker-training's `train` imports this module (SAGEMAKER_TRAINING_MODULE)
and calls main(); it writes /opt/ml/output/success, or /opt/ml/output/failure
with the message of a TrainingError, and sets the exit code. On SIGTERM the
job checkpoints to /opt/ml/checkpoints and exits 143; the next start resumes.
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
from byoc.training import checkpoints, data, hyperparameters, metrics, pretrained, report
from byoc.training.engine import (BatchNormalizer, EpochMeter, StopSignal, TrainStep, cosine_schedule, evaluate,
                                  train_one_epoch)
from byoc.training.errors import TrainingError

logger = logging.getLogger("byoc.training")


class Interrupted(Exception):
    def __init__(self, signum: int, checkpoint: Path):
        super().__init__(f"stopped by signal {signum}; checkpoint {checkpoint}")
        self.signum = signum


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def configure_torch(hp: hyperparameters.Hyperparameters) -> torch.device:
    torch.manual_seed(hp.seed)
    torch.set_num_threads(available_cores())
    if hp.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def run(env: environment.Environment, stop: StopSignal) -> dict:
    hp = hyperparameters.parse(env.hyperparameters)
    channels = data.find_channels(env.channel_input_dirs)
    if hp.early_stopping_patience and "valid" not in channels:
        raise hyperparameters.HyperparameterError(
            "Hyperparameter early_stopping_patience needs a 'valid' channel to measure improvement on."
        )
    logger.info("hyperparameters: %s", hp)
    logger.info("channels: %s", {name: str(path) for name, path in channels.items()})
    device = configure_torch(hp)
    workers = hp.workers or available_cores()

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
    train_loader, sampler = data.train_loader(splits["train"], prep, hp, workers)
    eval_loaders = {name: data.eval_loader(splits[name], hp.batch_size, workers)
                    for name in ("valid", "test") if name in splits}
    optimizer = make_optimizer(hp, model)
    steps_per_epoch = len(train_loader)
    total_steps = hp.epochs * steps_per_epoch
    scheduler = cosine_schedule(optimizer, total_steps, warmup_steps=round(hp.warmup_epochs * steps_per_epoch))
    dtype = amp_dtype(hp, device)
    step = TrainStep(
        model=torch.compile(model) if hp.compile else model,
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
    state = checkpoints.load_latest(checkpoint_dir)
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
        torch.set_rng_state(state["torch_rng"])
        epoch, meter, history, best = state["epoch"], EpochMeter(**state["meter"]), list(state["history"]), state["best"]
        logger.info("resumed at epoch %d after %d of its samples", epoch, meter.seen)

    def checkpoint(at_epoch: int, current: EpochMeter) -> Path:
        return checkpoints.save(checkpoint_dir, {
            "epoch": at_epoch, "samples_done": current.seen, "meter": current.state(), "history": history,
            "best": best, "architecture": hp.model, "class_names": spec.class_names,
            "hyperparameters": asdict(hp), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": step.scaler.state_dict() if step.scaler else {},
            "torch_rng": torch.get_rng_state(),
        })

    while epoch <= hp.epochs:
        if hp.freeze_backbone_epochs:
            pretrained.set_backbone_frozen(model, hp.model, frozen=epoch <= hp.freeze_backbone_epochs)
        sampler.set_epoch(epoch, start=meter.seen)
        if not train_one_epoch(step, train_loader, meter, stop):
            raise Interrupted(stop.signum, checkpoint(epoch, meter))
        record = {"epoch": epoch, "train_loss": meter.loss, "train_acc": meter.accuracy,
                  "lr": optimizer.param_groups[0]["lr"], "images_per_sec": meter.seen / max(meter.seconds, 1e-9)}
        if "valid" in eval_loaders:
            valid, _ = evaluate(model, eval_loaders["valid"], device, len(classes), hp.channels_last)
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
        test, confusion = evaluate(model, eval_loaders["test"], device, len(classes), hp.channels_last)
        per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
        results.update(test_loss=test["loss"], test_acc=test["acc"],
                       test_per_class_acc=dict(zip(spec.class_names, per_class)),
                       test_confusion=confusion.tolist())
        logger.info(metrics.final_line(results))

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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.time()
    stop = StopSignal()
    try:
        env = environment.Environment()
        clear_previous_outcome(env.output_dir)
        run(env, stop)
    except Interrupted as interrupted:
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
