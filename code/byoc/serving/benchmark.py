"""The serving benchmark's in-process side, run inside the serving image (python -m byoc.serving.benchmark).

  --make-model DIR   write a model package (random weights: speed does not depend on them)
  --model DIR        time the bare model: batch-1 latency (p50, p99) and batch-B throughput on
                     preprocessed tensors, with the torch threads one server worker gets, in the
                     precision the server picks (BYOC_PRECISION and its guard, byoc.precision)
                     and its CPU graph mode (BYOC_CPU_GRAPH)
Prints one JSON object.
"""
import argparse
import json
import statistics
import time

import torch

from byoc import model_package
from byoc.contract import ModelSpec, Preprocessing
from byoc.serving import settings
from byoc.serving.inference import Classifier


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile (q in [0, 1]) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_model(out: str, architecture: str, classes: int, crop: int) -> None:
    spec = ModelSpec(architecture, [f"class_{i:03d}" for i in range(classes)], Preprocessing(round(crop * 8 / 7), crop))
    model_package.save(model_package.build(spec), spec, out)


def time_model(model_dir: str, batch: int, threads: int, calls: int, seconds: float) -> dict:
    torch.set_num_threads(threads)
    served = settings.from_environment()
    classifier = Classifier.load(model_dir, torch.device("cpu"), served.precision, served.min_agreement,
                                 served.cpu_graph)
    one = torch.randn(1, *classifier.input_shape)
    many = torch.randn(batch, *classifier.input_shape)
    for _ in range(3):
        classifier.probabilities(many)
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        classifier.probabilities(one)
        latencies.append(1000 * (time.perf_counter() - started))
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or images < 5 * batch:
        classifier.probabilities(many)
        images += batch
    return {"torch_threads": threads, "batch": batch, "raw_calls": calls, "precision": classifier.precision.reason,
            "graph": classifier.model.graph,
            "raw_latency_ms_p50": round(statistics.median(latencies), 1),
            "raw_latency_ms_p99": round(percentile(latencies, 0.99), 1),
            "raw_images_per_sec": round(images / (time.perf_counter() - started), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-model")
    parser.add_argument("--architecture", default="resnet50")
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--calls", type=int, default=200, help="timed batch-1 calls")
    parser.add_argument("--seconds", type=float, default=15, help="time spent at --batch")
    args = parser.parse_args()
    if args.make_model:
        make_model(args.make_model, args.architecture, args.classes, args.crop)
    if args.model:
        print(json.dumps(time_model(args.model, args.batch, args.threads, args.calls, args.seconds)))


if __name__ == "__main__":
    main()
