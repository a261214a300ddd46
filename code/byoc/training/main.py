"""The training job: SageMaker's contract in, a model package and metrics out.

sagemaker-training's `train` imports this module (SAGEMAKER_TRAINING_MODULE)
and calls main(); it writes /opt/ml/output/success, or /opt/ml/output/failure
with the message of a TrainingError, and sets the exit code.
"""
import json
import logging
import os
import time
import traceback
from pathlib import Path

import torch
from sagemaker_training import environment

from byoc import model_package
from byoc.model_package import ModelSpec
from byoc.preprocessing import Preprocessing
from byoc.training import data, hyperparameters
from byoc.training.engine import cosine_schedule, evaluate, train_one_epoch
from byoc.training.errors import TrainingError

logger = logging.getLogger("byoc.training")


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def run(env: environment.Environment) -> dict:
    hp = hyperparameters.parse(env.hyperparameters)
    channels = data.find_channels(env.channel_input_dirs)
    logger.info("hyperparameters: %s", hp)
    logger.info("channels: %s", {name: str(path) for name, path in channels.items()})

    torch.manual_seed(hp.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    workers = hp.workers or available_cores()
    torch.set_num_threads(available_cores())

    prep = Preprocessing(resize_size=hp.resize_size or hp.image_size, crop_size=hp.image_size)
    splits = data.load_splits(channels, prep)
    classes = splits["train"].classes
    logger.info("classes: %d; images: %s", len(classes), {k: len(v) for k, v in splits.items()})

    spec = ModelSpec(architecture=hp.model, class_names=[data.display_name(c) for c in classes],
                     preprocessing=prep)
    model = spec.build().to(device)
    train_loader = data.make_loader(splits["train"], hp.batch_size, True, workers, hp.seed)
    eval_loaders = {name: data.make_loader(splits[name], hp.batch_size, False, workers, hp.seed)
                    for name in ("valid", "test") if name in splits}

    optimizer = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum,
                                weight_decay=hp.weight_decay, nesterov=hp.momentum > 0)
    total_steps = hp.epochs * len(train_loader)
    scheduler = cosine_schedule(optimizer, total_steps, warmup_steps=min(len(train_loader), total_steps // 10))

    history = []
    for epoch in range(1, hp.epochs + 1):
        trained = train_one_epoch(model, train_loader, optimizer, scheduler, device)
        record = {"epoch": epoch, "train_loss": trained.loss, "train_acc": trained.accuracy,
                  "images_per_sec": trained.images / trained.seconds}
        if "valid" in eval_loaders:
            valid, _ = evaluate(model, eval_loaders["valid"], device, len(classes))
            record.update(valid_loss=valid.loss, valid_acc=valid.accuracy)
        history.append(record)
        logger.info("epoch=%d %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))

    metrics = {"epochs": history}
    if "test" in eval_loaders:
        test, confusion = evaluate(model, eval_loaders["test"], device, len(classes))
        per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
        metrics.update(test_loss=test.loss, test_acc=test.accuracy,
                       test_per_class_acc=dict(zip(spec.class_names, per_class)),
                       test_confusion=confusion.tolist())
        logger.info("test_loss=%.4f test_acc=%.4f", test.loss, test.accuracy)

    model_package.save(model, spec, env.model_dir)
    output = Path(env.output_data_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("model written to %s, metrics to %s", env.model_dir, output / "metrics.json")
    return metrics


def clear_previous_outcome(output_dir: str) -> None:
    """A rerun over the same local /opt/ml tree must not inherit the last run's verdict."""
    for name in ("success", "failure"):
        Path(output_dir, name).unlink(missing_ok=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.time()
    try:
        env = environment.Environment()
        clear_previous_outcome(env.output_dir)
        run(env)
    except TrainingError:
        raise
    except Exception as error:  # the log keeps the traceback; the failure file gets one paragraph
        logger.error("training failed:\n%s", traceback.format_exc())
        raise TrainingError(
            f"Training failed with an unexpected {type(error).__name__}: {error}. "
            "The job's log has the full traceback."
        ) from error
    logger.info("training finished in %.1f s", time.time() - start)
