"""make bench-peers: the serving image beside AWS's own PyTorch serving stacks, on this machine.

Every stack serves the same ResNet-50 (133 classes, 224 px, random weights: speed does not depend
on them) to the same 200 JPEGs through bench_serve's keep-alive clients at the container's own
address, on the serving image's own Python and torch (containers/peers/Dockerfile builds the peers
FROM it):
  byoc-serving in fp32, and in its fast path on this CPU (bf16 where it has native BF16, else int8);
  sagemaker-inference 1.10.1 + MMS 1.1.11 with sagemaker-pytorch-inference 1.5.1's handler;
  sagemaker-pytorch-inference 2.0.25 + TorchServe 0.12.0, the stack of AWS's PyTorch DLCs;
each peer at its defaults and tuned to one worker with every core, serving a typical user script
(containers/peers/inference.py). A round runs every stack once, in turn; rounds repeat it, so
drift on a shared machine spreads over all. Each run: start to first answer, c1 p50 / p99 after
a warm-up, c8 images/s; the kit's runs also time the bare model (bench_serve.measure) after the
server's run, and the run the goals judge (the fast path, else fp32) times it interleaved with lone
requests to the server in the same minute (--paired, bench_serve.PAIRS), so that the two p99s that
the c1 tail goal compares see the same machine; that goal is judged round by round and on every
round's pairs together, each figure with the range chance alone gives it.
Checks that every stack in fp32 answers the same top class, then writes bench-results/peers.json and
peers.md: the CPU and its flags, the table with ratios, and issue 18's goals, met or not.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

import bench_serve
from byoc import precision
from byoc.serving.benchmark import percentile

SERVING = os.environ.get("SERVING_IMAGE", "byoc-serving:latest")
MMS_PEER = os.environ.get("MMS_PEER_IMAGE", "byoc-peer-mms:latest")
TORCHSERVE_PEER = os.environ.get("TORCHSERVE_PEER_IMAGE", "byoc-peer-torchserve:latest")
USER_SCRIPT = Path(__file__).resolve().parents[1] / "containers" / "peers" / "inference.py"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
PEER_THREADS = re.compile(r"peer model loaded: torch threads (\d+)")
FAST, FP32 = "byoc-serving, fast path", "byoc-serving, fp32"
PAIRED_GOAL = "c1 p99 - bare-model p99 <= 5 ms, interleaved in the same minute"


@dataclass
class Stack:
    name: str
    image: str
    environment: dict = field(default_factory=dict)
    kit: bool = False  # the kit's image: its own model package, and the bare model timed too
    tuned: bool = False
    paired: bool = False  # the kit's run the goals judge: its lone requests interleaved with the bare model


def stacks(cores: int, fast_path: str | None) -> list[Stack]:
    """Every stack; the kit's fast path is `fast_path` (bf16 or int8; None: fp32 alone)."""
    every_core = {"OMP_NUM_THREADS": str(cores)}
    mms, torchserve = "sagemaker-inference 1.10.1 + MMS 1.1.11", "sagemaker-pytorch-inference 2.0.25 + TorchServe 0.12.0"
    found = [Stack(FP32, SERVING, {"BYOC_PRECISION": "fp32"}, kit=True, paired=not fast_path)]
    if fast_path:
        found.append(Stack(FAST, SERVING, {"BYOC_PRECISION": fast_path}, kit=True, paired=True))
    return found + [
        Stack(f"{mms}, defaults", MMS_PEER),
        Stack(f"{mms}, tuned", MMS_PEER, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **every_core}, tuned=True),
        Stack(f"{torchserve}, defaults", TORCHSERVE_PEER),
        # TorchServe batches up to 8 requests for one worker; AWS's transformer still runs them one by one.
        Stack(f"{torchserve}, tuned", TORCHSERVE_PEER,
              {"SAGEMAKER_TS_MIN_WORKERS": "1", "SAGEMAKER_TS_MAX_WORKERS": "1", "SAGEMAKER_TS_BATCH_SIZE": "8",
               "SAGEMAKER_TS_MAX_BATCH_DELAY": "5", **every_core}, tuned=True),
    ]


def cpu() -> dict:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.M).group(1).split())
    return {"model": model.group(1) if model else "unknown", "cores": os.cpu_count(),
            "flags": [flag for flag in CPU_FLAGS if flag in flags],
            "native_bf16": precision.cpu_has_bf16()}  # the test `serve` makes under BYOC_PRECISION=auto


def model_dirs(client) -> tuple[Path, Path]:
    """The kit's benchmark package, and the same weights as a state dict beside the user script."""
    root = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    os.chmod(root, 0o755)
    script = ("import torch; from safetensors.torch import load_file; "
              "torch.save(load_file('/m/kit/model.safetensors'), '/m/peer/model.pth')")
    client.containers.run(SERVING, ["sh", "-c", "mkdir -p /m/peer/code && python -m byoc.serving.benchmark "
                                    f"--make-model /m/kit && python -c \"{script}\" && chmod -R a+rX /m"],
                          volumes={str(root): {"bind": "/m", "mode": "rw"}}, remove=True, network_mode="none")
    shutil.copy(USER_SCRIPT, root / "peer" / "code" / "inference.py")
    os.chmod(root / "peer" / "code" / "inference.py", 0o644)
    return root / "kit", root / "peer"


def top_class(answer: dict) -> int:
    """The class index of the first prediction: the kit names classes class_NNN, the user script numbers them."""
    first = answer["predictions"][0]
    return int(str(first.get("class", first.get("label"))).rsplit("_", 1)[-1])


def measure_peer(client, args, stack: Stack, model_dir: Path, bodies: list[bytes]) -> dict:
    started = time.perf_counter()
    container = client.containers.run(stack.image, ["serve"], detach=True, environment=stack.environment,
                                      volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}})
    try:
        host, port = bench_serve.address(container, "container", 8080)
        bench_serve.wait_for_first_answer(container, host, port, bodies[0], started)
        found = {"start_to_first_invocation_s": round(time.perf_counter() - started, 2)}
        c1_client = bench_serve.Client(host, port)
        found["top_class"] = top_class(json.loads(c1_client.answer(bodies[0])))
        for i in range(args.warm_up):
            c1_client.invoke(bodies[i % len(bodies)])
        c1 = [c1_client.invoke(bodies[i % len(bodies)]) for i in range(args.requests)]
        c8, _ = bench_serve.concurrency_8(host, port, bodies, args.seconds)
        threads = PEER_THREADS.findall(container.logs().decode(errors="replace"))
        return {**found, "c1_latency_ms_p50": round(statistics.median(c1), 1),
                "c1_latency_ms_p99": round(percentile(c1, 0.99), 1), "c8_images_per_sec": round(c8, 2),
                "server": f"{len(threads)} worker(s) x {threads[0] if threads else '?'} thread(s)"}
    finally:
        container.remove(force=True)


def measure_kit(client, args, stack: Stack, model_dir: Path, bodies: list[bytes]) -> dict:
    kit_args = argparse.Namespace(**{**vars(args), "environment": stack.environment, "target": "container",
                                     "port": 18080, "architecture": "resnet50", "crop": 224, "split": False,
                                     "thread_cpu": False, "paired": args.paired if stack.paired else 0})
    found = bench_serve.measure(client, kit_args, model_dir, bodies, stack.image)
    result = bench_serve.summary(kit_args, found)
    result["top_class"] = top_class(found["first_answer"])
    if found.get("paired_c1"):  # every pair, in order: goals() judges the rounds' pairs together too
        result["paired_c1_ms"], result["paired_bare_ms"] = ([round(ms, 2) for ms in series]
                                                            for series in (found["paired_c1"], found["paired_bare"]))
    result["server"] = re.search(r"\d+ worker\(s\) x \d+ thread\(s\)", result.pop("server")).group(0)
    return result


def run_rounds(client, args, chosen: list[Stack], bodies: list[bytes]) -> list[dict]:
    kit_dir, peer_dir = model_dirs(client)
    try:
        rows = measure_all(client, args, chosen, bodies, kit_dir, peer_dir)
    finally:  # two copies of ResNet-50's weights, also when a run fails
        shutil.rmtree(kit_dir.parent, ignore_errors=True)
    # The same weights give the same class in fp32 everywhere (bf16 may flip a random model's close call).
    fp32 = [(row["stack"], row["top_class"]) for row in rows if row["stack"] != FAST]
    if len({found for _, found in fp32}) != 1:
        raise SystemExit(f"the stacks disagree on the first JPEG's class, so they do not serve the same model: {fp32}")
    return rows


def measure_all(client, args, chosen: list[Stack], bodies: list[bytes], kit_dir: Path, peer_dir: Path) -> list[dict]:
    rows = []
    for round_number in range(1, args.rounds + 1):
        for stack in chosen:
            load = round(os.getloadavg()[0], 2)
            print(f"round {round_number}: {stack.name} (load average {load})", flush=True)
            measure = measure_kit if stack.kit else measure_peer
            found = measure(client, args, stack, kit_dir if stack.kit else peer_dir, bodies)
            rows.append({"stack": stack.name, "round": round_number, "tuned": stack.tuned, "kit": stack.kit,
                         "image": stack.image, "environment": stack.environment, "load_average_at_start": load,
                         **found})
    return rows


def ours(rows: list[dict], number: int) -> dict | None:
    """The kit's run that the goals judge in a round: its fast path, else fp32."""
    this = {row["stack"]: row for row in rows if row["round"] == number and row["kit"]}
    return this.get(FAST) or this.get(FP32)


def goals(rows: list[dict]) -> list[dict]:
    """Issue 18's goals, round by round: each with its measured values and whether every round met it."""
    found = []
    for number in sorted({row["round"] for row in rows}):
        kit = ours(rows, number)
        if kit is None:
            continue
        peers = [row for row in rows if row["round"] == number and not row["kit"]]
        for peer in peers:
            target = 1.5 if peer["tuned"] else 2.0
            ratio = kit["c8_images_per_sec"] / peer["c8_images_per_sec"]
            found.append((f"c8 images/s >= {target}x {peer['stack']}", number, f"{ratio:.3f}x", ratio >= target))
        tuned = [row["c1_latency_ms_p50"] for row in peers if row["tuned"]]
        if tuned:
            found.append(("c1 p50 at least 20 % below the best tuned peer", number,
                          f"{kit['c1_latency_ms_p50']} ms vs {min(tuned)} ms", kit["c1_latency_ms_p50"] <= 0.8 * min(tuned)))
        found.append(("c1 p99 - bare-model p99 <= 5 ms, the bare model timed after the server's run", number,
                      f"{kit['c1_p99_minus_raw_p99_ms']} ms", kit["c1_p99_minus_raw_p99_ms"] <= 5))
        if "paired_c1_p99_minus_bare_p99_ms" in kit:
            low, high = kit["paired_p99_difference_chance_range_ms"]
            found.append((PAIRED_GOAL, number, f"{kit['paired_c1_p99_minus_bare_p99_ms']} ms (by chance alone: {low} to "
                          f"{high})", kit["paired_c1_p99_minus_bare_p99_ms"] <= 5))
        found.append(("start to first answer <= 5 s", number, f"{kit['start_to_first_invocation_s']} s",
                      kit["start_to_first_invocation_s"] <= 5))
    found.extend(paired_together(rows))
    names = list(dict.fromkeys(name for name, *_ in found))
    return [{"goal": name, "measured": {n: value for goal, n, value, _ in found if goal == name},
             "met": all(met for goal, _, _, met in found if goal == name)} for name in names]


def paired_together(rows: list[dict]) -> list[tuple]:
    """The c1 tail goal over every round's pairs at once: each pair is still timed in one minute, and a
    p99 of both rounds' pairs moves less by chance than one round's (each round's range says how far)."""
    kits = [kit for kit in (ours(rows, number) for number in sorted({row["round"] for row in rows}))
            if kit and kit.get("paired_c1_ms")]
    if len(kits) < 2:
        return []
    served, bare = (sum((kit[series] for kit in kits), []) for series in ("paired_c1_ms", "paired_bare_ms"))
    difference = round(bench_serve.p99_difference(served, bare), 1)
    low, high = (round(end, 1) for end in bench_serve.chance_range(served, bare))
    return [(f"{PAIRED_GOAL}, every round's pairs together", f"{len(served)} pairs",
             f"{difference} ms (by chance alone: {low} to {high})", difference <= 5)]


def table(rows: list[dict]) -> list[str]:
    lines = ["| stack | round | server | start to first answer | c1 p50 / p99 ms | c8 images/s | fast path's c8 ÷ this |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        kit = ours(rows, row["round"])
        ratio = f"{kit['c8_images_per_sec'] / row['c8_images_per_sec']:.2f}x" if kit else ""
        lines.append(f"| {row['stack']} | {row['round']} | {row['server']} | {row['start_to_first_invocation_s']} s | "
                     f"{row['c1_latency_ms_p50']} / {row['c1_latency_ms_p99']} | {row['c8_images_per_sec']} | {ratio} |")
    for row in (r for r in rows if r["kit"]):
        lines.append(f"| bare model ({row['precision']}), batch {row['batch']} / batch 1 | {row['round']} | "
                     f"{row['torch_threads']} thread(s) | | {row['raw_latency_ms_p50']} / {row['raw_latency_ms_p99']} "
                     f"(batch 1) | {row['raw_images_per_sec']} | |")
    for row in (r for r in rows if r["kit"] and "paired_requests" in r):
        lines.append(f"| {row['stack']}: lone requests / bare model interleaved, {row['paired_requests']} each | "
                     f"{row['round']} | | | {row['paired_c1_ms_p50']} / {row['paired_c1_ms_p99']}; bare "
                     f"{row['paired_bare_ms_p50']} / {row['paired_bare_ms_p99']} | | |")
    return lines


def paired_runs(rows: list[dict]) -> str:
    """Which runs timed lone requests interleaved with the bare model, and how many."""
    paired = {row["stack"]: row["paired_requests"] for row in rows if "paired_requests" in row}
    if not paired:
        return "no lone requests interleaved with the bare model."
    runs = "; ".join(f"{count} for {stack}" for stack, count in paired.items())
    return f"then lone requests, each followed by a call of the bare model in the same container: {runs}."


def report(machine: dict, args, rows: list[dict]) -> str:
    fast = "bf16 (native BF16)" if machine["native_bf16"] else "int8 (no native BF16 here)"
    lines = [f"CPU: {machine['model']}, {machine['cores']} cores, flags {' '.join(machine['flags']) or 'none of interest'}; "
             f"fast path: {fast}.",
             f"Each run: {args.warm_up} warm-up requests, {args.requests} at c1, {args.seconds:g} s at c8; "
             f"{args.rounds} round(s); {paired_runs(rows)}",
             "", *table(rows), "", "| goal | measured, by round | met |", "|---|---|---|"]
    for goal in goals(rows):
        measured = "; ".join(f"{n}: {value}" for n, value in goal["measured"].items())
        lines.append(f"| {goal['goal']} | {measured} | {'yes' if goal['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("DATA_DIR", "data/fashion-mnist"))
    parser.add_argument("--out", default=os.environ.get("BENCH_DIR", "bench-results"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=150, help="requests at concurrency 1")
    parser.add_argument("--warm-up", type=int, default=50, help="requests before timing (the JVMs compile hot paths)")
    parser.add_argument("--seconds", type=float, default=30, help="duration at concurrency 8")
    parser.add_argument("--paired", type=int, default=bench_serve.PAIRS,
                        help="lone requests to the kit's judged run (the fast path, else fp32), interleaved "
                             "with calls of its bare model (0: none)")
    parser.add_argument("--only", action="append", default=[], help="stacks whose name contains this (repeatable)")
    args = parser.parse_args()
    if args.paired < 0:
        parser.error("--paired takes a count of 0 or more")
    return args


def main() -> None:
    args = parse_args()
    machine, client = cpu(), docker.from_env()
    chosen = [s for s in stacks(machine["cores"], "bf16" if machine["native_bf16"] else "int8")
              if not args.only or any(part in s.name for part in args.only)]
    rows = run_rounds(client, args, chosen, bench_serve.jpegs(Path(args.data), 200))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps({"cpu": machine, "runs": rows, "goals": goals(rows)}, indent=2) + "\n")
    text = report(machine, args, rows)
    (out / "peers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
