"""Training-pipeline efficiency: full training steps per second over raw compute (make bench-train).

    efficiency = images/s of the real step (loading + augmentation + forward,
                 backward, optimiser) / images/s of the same steps on the
                 same batches, loaded into memory beforehand

Both use byoc's own loader and TrainStep with the same model and batch size,
measured in steady state (after warm-up steps, worker start-up excluded).
"""
import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from byoc.contract import Preprocessing
from byoc.models import build_model
from byoc.training import data, hyperparameters
from byoc.training.engine import TrainStep
from byoc.training.setup import available_cores, make_step


def job_step(hp, prep: Preprocessing, num_classes: int, steps_per_epoch: int) -> TrainStep:
    """A fresh model and the job's own training step around it, on the CPU."""
    torch.manual_seed(hp.seed)
    model = build_model(hp.model, num_classes)
    if hp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return make_step(hp, model, prep, torch.device("cpu"), steps_per_epoch, num_classes)


def images_per_second(step: TrainStep, batches, warmup: int, steps: int) -> float:
    batches = iter(batches)
    for images, labels in itertools.islice(batches, warmup):
        step(images, labels)
    start, seen = time.perf_counter(), 0
    for images, labels in itertools.islice(batches, steps):
        step(images, labels)
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="a training channel: one folder per class")
    parser.add_argument("--hyperparameters", default="{}", help="JSON, as a job would get them")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)

    hp = hyperparameters.parse(json.loads(args.hyperparameters))
    torch.manual_seed(hp.seed)
    torch.set_num_threads(available_cores())
    prep = Preprocessing(resize_size=hp.resize_size or hp.image_size, crop_size=hp.image_size)
    train = data.load_splits({"train": args.train}, prep, cache_bytes=hp.cache_mb * 2**20,
                             max_bad_fraction=hp.max_bad_image_fraction, threads=available_cores())["train"]
    workers = hp.workers or available_cores()
    loader, sampler = data.train_loader(train, prep, hp, workers)
    sampler.set_epoch(1)

    # The same steps on the same batches, loaded into memory beforehand: compute only. (Not one
    # batch repeated: a model that fits a single batch drifts into slower arithmetic.)
    in_memory = list(itertools.islice(itertools.cycle(loader), args.warmup + args.steps))
    classes, steps_per_epoch = len(train.classes), len(loader)
    raw = images_per_second(job_step(hp, prep, classes, steps_per_epoch), in_memory, args.warmup, args.steps)
    sampler.set_epoch(1)  # the pipeline run starts the same epoch again: same order, same augmentation
    full = images_per_second(job_step(hp, prep, classes, steps_per_epoch), itertools.cycle(loader), args.warmup,
                             args.steps)
    result = {"model": hp.model, "batch_size": hp.batch_size, "image_size": hp.image_size, "workers": workers,
              "threads": torch.get_num_threads(), "raw_images_per_sec": round(raw, 1),
              "pipeline_images_per_sec": round(full, 1), "efficiency": round(full / raw, 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
