"""The serving benchmark's in-process side, run inside the serving image (python -m byoc.serving.benchmark).

  --make-model DIR   write a model package (random weights: speed does not depend on them)
  --model DIR        time the bare model: batch-1 latency (p50, p99) and batch-B throughput on
                     preprocessed tensors, with the torch threads one server worker gets, in the
                     precision the server picks (BYOC_PRECISION and its guard, byoc.precision)
                     and its CPU graph mode (BYOC_CPU_GRAPH)
  --model DIR --paired
                     the same bare model, one batch-1 call per line read on stdin, its milliseconds
                     written as a line on stdout (after a first line that says it is ready):
                     scripts/bench_serve.py interleaves these calls with the server's requests, so
                     both are timed on the same machine in the same minute
  --compare-graph    each architecture the kit builds, eager against graph mode (byoc.cpu_graph), in
                     fp32 and bf16 at batch 1 and --batch: ms per call (median of --calls after
                     three warm-ups), the largest logit difference, whether top-1 agrees (make bench-cpu-graph)
  --graph-memory     what graph mode costs in memory: a fresh process's RSS after three calls at each
                     batch size 1-8 (cpu_graph.CHUNK), eager and graph, fp32 and bf16, against the
                     weights byoc.serving.memory reserves for it (make bench-cpu-graph)
Prints one JSON object.
"""
import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from byoc import cpu_graph, model_package, precision, quantized
from byoc.contract import ModelSpec, Preprocessing
from byoc.models import ARCHITECTURES, build_model
from byoc.serving import memory, settings
from byoc.serving.inference import Classifier, weights_bytes


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile (q in [0, 1]) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_model(out: str, architecture: str, classes: int, crop: int) -> None:
    """Random weights, and int8 ranges calibrated on random images so that BYOC_PRECISION=int8 can be
    timed; no agreement is measured (0 of 0 images), so `auto` serves this model in fp32."""
    spec = ModelSpec(architecture, [f"class_{i:03d}" for i in range(classes)], Preprocessing(round(crop * 8 / 7), crop))
    model = model_package.build(spec).eval()
    generator = torch.Generator().manual_seed(0)
    ranges, seen = quantized.calibrate(model, [torch.randn(8, 3, crop, crop, generator=generator) for _ in range(4)],
                                       crop)
    unmeasured = {"dtype": "int8", "images": 0, "agreement": 0.0, "split": "none: a benchmark model",
                  "calibration_images": seen, "ranges": ranges}
    model_package.save(model, replace(spec, int8=unmeasured), out)


def served_classifier(model_dir: str, threads: int) -> Classifier:
    """The model as one server worker runs it: its torch threads, precision and graph mode."""
    torch.set_num_threads(threads)
    served = settings.from_environment()
    return Classifier.load(model_dir, torch.device("cpu"), served.precision, served.min_agreement, served.cpu_graph)


def time_model(model_dir: str, batch: int, threads: int, calls: int, seconds: float) -> dict:
    classifier = served_classifier(model_dir, threads)
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


def paired_calls(model_dir: str, threads: int, lines_in=None, lines_out=None) -> None:
    """One timed batch-1 call per line read, until the input ends; a ready line first (JSON: the
    precision and graph mode), then each call's milliseconds."""
    lines_in, lines_out = lines_in or sys.stdin.buffer, lines_out or sys.stdout
    classifier = served_classifier(model_dir, threads)
    one = torch.randn(1, *classifier.input_shape)
    for _ in range(3):
        classifier.probabilities(one)
    print(json.dumps({"precision": classifier.precision.reason, "graph": classifier.model.graph}),
          file=lines_out, flush=True)
    for _ in iter(lines_in.readline, b""):
        started = time.perf_counter()
        classifier.probabilities(one)
        print(f"{1000 * (time.perf_counter() - started):.3f}", file=lines_out, flush=True)


# Each architecture at the input size it is built for (the dog-breed ResNet-50 at 224 px).
CROPS = {"small_cnn": 28, "resnet_small": 32, "wrn28_10": 32, "resnet50": 224}


def _median_ms(model: precision.Runnable, batch: torch.Tensor, calls: int) -> tuple[float, torch.Tensor]:
    for _ in range(3):  # graph mode: traced, profiled, fused
        logits = precision.run(model, batch)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        precision.run(model, batch)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times), logits


def compare_graph(batch: int, threads: int, calls: int, architectures=ARCHITECTURES) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for architecture in architectures:
        model = build_model(architecture, 133).eval()
        for module in model.modules():  # batch-norm statistics other than the identity, as after training
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        for dtype in (torch.float32, torch.bfloat16):
            for size in (1, batch):
                inputs = torch.randn(size, 3, CROPS[architecture], CROPS[architecture])
                eager_ms, eager = _median_ms(precision.prepare(model, dtype), inputs, calls)
                graph_ms, graph = _median_ms(precision.prepare(model, dtype, graph=True), inputs, calls)
                rows.append({"architecture": architecture, "dtype": str(dtype).split(".")[1], "batch": size,
                             "eager_ms": round(eager_ms, 2), "graph_ms": round(graph_ms, 2),
                             "speedup": round(eager_ms / graph_ms, 2),
                             "max_logit_difference": float(f"{(graph - eager).abs().max().item():.3g}"),
                             "top1_agrees": bool(torch.equal(graph.argmax(1), eager.argmax(1)))})
    return {"torch_threads": threads, "calls": calls, "rows": rows}


def _rss_after_every_chunk_size(architecture: str, dtype: torch.dtype, graph: bool, threads: int) -> int:
    """This process's RSS in bytes after three calls at each batch size up to a chunk."""
    torch.set_num_threads(threads)
    model = precision.prepare(build_model(architecture, 133).eval(), dtype, graph)  # the served copy alone
    side = CROPS[architecture]
    for size in range(1, cpu_graph.CHUNK + 1):
        for _ in range(3):
            precision.run(model, torch.zeros(size, 3, side, side))
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) * 1024


def graph_memory(architecture: str, threads: int) -> dict:
    """Graph mode's memory beyond the eager model, in copies of the weights in the serving dtype; each
    way measured in a fresh process (spawned: a process's RSS does not shrink after a run)."""
    rows, spawn, model = [], multiprocessing.get_context("spawn"), build_model(architecture, 133)
    for dtype in (torch.float32, torch.bfloat16):
        rss = {}
        for graph in (False, True):
            with ProcessPoolExecutor(1, mp_context=spawn) as fresh:
                rss[graph] = fresh.submit(_rss_after_every_chunk_size, architecture, dtype, graph, threads).result()
        weights = weights_bytes(model, dtype)
        rows.append({"dtype": str(dtype).split(".")[1], "weights_mb": round(weights / 1e6, 1),
                     "eager_rss_mb": round(rss[False] / 1e6), "graph_rss_mb": round(rss[True] / 1e6),
                     "graph_extra_copies": round((rss[True] - rss[False]) / weights, 1)})
    return {"architecture": architecture, "torch_threads": threads, "batch_sizes": f"1-{cpu_graph.CHUNK}",
            "copies_reserved": memory.GRAPH_WEIGHT_COPIES, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-model")
    parser.add_argument("--architecture", default="resnet50", choices=sorted(ARCHITECTURES))
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--calls", type=int, default=200, help="timed batch-1 calls")
    parser.add_argument("--seconds", type=float, default=15, help="time spent at --batch")
    parser.add_argument("--paired", action="store_true", help="with --model: a call per line on stdin")
    parser.add_argument("--compare-graph", action="store_true")
    parser.add_argument("--graph-memory", action="store_true", help="of --architecture")
    args = parser.parse_args()
    if args.compare_graph:
        print(json.dumps(compare_graph(args.batch, args.threads, min(args.calls, 20))))
    if args.graph_memory:
        print(json.dumps(graph_memory(args.architecture, args.threads)))
    if args.make_model:
        make_model(args.make_model, args.architecture, args.classes, args.crop)
    if args.model and args.paired:
        paired_calls(args.model, args.threads)
    elif args.model:
        print(json.dumps(time_model(args.model, args.batch, args.threads, args.calls, args.seconds)))


if __name__ == "__main__":
    main()
