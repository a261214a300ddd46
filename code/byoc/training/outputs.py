"""What a job leaves: the test figures, the model package, metrics.json and pictures; and, when
it is stopped, the model and metrics so far."""
import json
import logging
from dataclasses import asdict, replace

from byoc import model_package, precision, quantized
from byoc.training import metrics, report
from byoc.training.engine import evaluate
from byoc.training.progress import Progress
from byoc.training.setup import Job

logger = logging.getLogger("byoc.training")


def shipped(progress: Progress) -> dict:
    """Which weights the model package holds, for metrics.json."""
    best = progress.best
    if best["model"] is None:
        return {"weights": "last", "epoch": len(progress.history)}
    return {"weights": "best_validated", "epoch": best["epoch"], "valid_acc": best["acc"]}


def keep_best(job: Job, progress: Progress) -> dict:
    """Load the best validated weights into the model where a validation channel chose some:
    what the model package ships."""
    best = progress.best
    if best["model"] is not None:
        job.model.load_state_dict(best["model"])
        logger.info("keeping the weights of epoch %d (validation accuracy %.4f)", best["epoch"], best["acc"])
    return shipped(progress)


def results(job: Job, progress: Progress, stop=None) -> dict:
    """The epochs' records and, with a test channel, the test figures over all ranks. A stop request
    during the test pass leaves them out: the trained model is still written, and metrics.json
    says `stopped`."""
    found = {"epochs": progress.history, "model": shipped(progress), "hyperparameters": asdict(job.hp),
             "data": job.data}
    if "test" in job.eval_loaders:
        classes = job.spec.class_names
        test, confusion = evaluate(job.model, job.eval_loaders["test"], job.device, len(classes),
                                   job.hp.channels_last, job.group.sum, stop)
        if stop:
            found["stopped"] = {"signal": stop.signum, "during": "the test pass", "model": found["model"]}
            logger.warning("stopped during the test pass: writing the trained model without test figures")
            job.board.close()
            return found
        per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
        found.update(test_loss=test["loss"], test_acc=test["acc"], test_per_class_acc=dict(zip(classes, per_class)),
                     test_confusion=confusion.tolist())
        logger.info(metrics.final_line(found))
        job.board.scalars(len(progress.history) * job.steps_per_epoch,
                          {"test/loss": test["loss"], "test/acc": test["acc"]})
    found["precision"] = measure_precision(job, stop)
    found["int8"] = measure_int8(job, stop) if found["precision"] and not stop else {}
    if found["precision"] and stop:
        found["stopped"] = {"signal": stop.signum, "during": "the bf16 and int8 agreement passes",
                            "model": found["model"]}
        found["precision"], found["int8"] = {}, {}
        logger.warning("stopped during the bf16 and int8 agreement passes: writing the trained model without them")
    job.board.close()
    return found


def measure_precision(job: Job, stop=None) -> dict:
    """How the model fares in bf16 against fp32 on the validation set, else the test set, over all
    ranks: model.json records it, and serving's BYOC_PRECISION=auto uses bf16 only when it clears
    the bar. {} without either set."""
    split = next((name for name in ("valid", "test") if name in job.eval_loaders), None)
    if split is None:
        logger.info("no validation or test channel: bf16 agreement not measured (serving stays fp32 unless asked)")
        return {}
    found = precision.agreement(job.model, job.eval_loaders[split], job.device, job.group.sum, stop)
    logger.info("bf16 against fp32 on %d %s images: agreement %.4f, accuracy %.4f (fp32 %.4f)", found["images"],
                split, found["agreement"], found["accuracy"], found["fp32_accuracy"])
    return {**found, "split": split}


def measure_int8(job: Job, stop=None) -> dict:
    """int8 against fp32 on the split measure_precision used, after calibrating each activation's
    range on training images (every rank on its own, then the widest of each): model.json records
    both, and serving rebuilds the int8 model from them. {} where the model cannot be quantized."""
    split = next(name for name in ("valid", "test") if name in job.eval_loaders)
    batches = (job.step.normalize(images) for images, _ in job.train_loader)
    crop, ranks = job.spec.preprocessing.crop_size, job.group.world_size
    try:
        calibrated, failed = quantized.calibrate(job.model, batches, crop,
                                                 max(1, quantized.CALIBRATION_IMAGES // ranks), stop), None
    except quantized.QuantizationError as error:
        calibrated, failed = ([], 0), str(error)
    everyone = job.group.gather(calibrated)  # every rank calls it, also when calibration failed
    if failed or not all(ranges for ranges, _ in everyone):
        logger.warning("int8 not measured: this model cannot be quantized (%s); serving stays in bf16 or fp32",
                       failed or "another rank failed")
        return {}
    ranges = quantized.combine([ranges for ranges, _ in everyone])
    low = precision.prepare(job.model, precision.INT8, graph=True, int8={"ranges": ranges}, crop=crop)
    found = precision.agreement(job.model, job.eval_loaders[split], job.device, job.group.sum, stop, low=low,
                                limit=max(1, precision.INT8_AGREEMENT_IMAGES // ranks))
    logger.info("int8 against fp32 on %d %s images: agreement %.4f, accuracy %.4f (fp32 %.4f)", found["images"],
                split, found["agreement"], found["accuracy"], found["fp32_accuracy"])
    return {**found, "split": split, "calibration_images": sum(seen for _, seen in everyone), "ranges": ranges}


def write_metrics(job: Job, found: dict) -> None:
    output = job.output_data_dir
    output.mkdir(parents=True, exist_ok=True)
    if found.get("int8"):  # the ranges are for the model package, not for reading
        found = {**found, "int8": {key: value for key, value in found["int8"].items() if key != "ranges"}}
    (output / "metrics.json").write_text(json.dumps(found, indent=2) + "\n")
    if found["epochs"]:
        report.training_curves(found["epochs"], output / "training_curves.png")
    if "test_confusion" in found:
        report.confusion_matrix(found["test_confusion"], job.spec.class_names, output / "confusion_matrix.png")


def write_outputs(job: Job, found: dict) -> None:
    """The model package to /opt/ml/model, metrics and pictures to /opt/ml/output/data (rank 0 only)."""
    model_package.save(job.model, replace(job.spec, precision=found.get("precision", {}), int8=found.get("int8", {})),
                       job.model_dir)
    write_metrics(job, found)
    logger.info("model written to %s, metrics to %s", job.model_dir, job.output_data_dir / "metrics.json")


def write_stopped(job: Job, progress: Progress, signum: int) -> None:
    """A stopped job's model package (best validated weights so far, else the current ones; none
    before the first step) and metrics.json so far, without the test pass (rank 0 only)."""
    stopped = {"signal": signum, "epoch": progress.epoch,
               "epoch_images_done": progress.meter.seen * job.group.world_size, "model": None}
    if progress.epoch > 1 or progress.meter.seen:
        stopped["model"] = keep_best(job, progress)
        if stopped["model"]["weights"] == "last":
            stopped["model"] = {"weights": "current", "epoch": progress.epoch,
                                "epoch_images_done": stopped["epoch_images_done"]}
        model_package.save(job.model, job.spec, job.model_dir)
    else:
        logger.warning("stopped before the first training step: no model written")
    write_metrics(job, {"epochs": progress.history, "hyperparameters": asdict(job.hp), "data": job.data,
                        "stopped": stopped})
    job.board.close()
    logger.info("stopped: model %s written to %s, metrics so far to %s", stopped["model"], job.model_dir,
                job.output_data_dir / "metrics.json")
