"""make bench-soak: the serving image under a mix of good and hostile requests, for a minute.

Runs on the host (the dev environment: docker SDK). Sixteen keep-alive clients on the container's
own address send, for --seconds, good JPEGs (three in four requests, with top_k varying so the
answers vary in size) and bad requests from the hostile-input corpus (tests/hostile.py: wrong
formats, pixel and zlib bombs, lying .npy headers, pathological JSON, form and multipart bodies...).
It reports good-request throughput and latency (p50, p99), answers by status (and any bad
request answered other than the corpus says), worker restarts read from MMS's worker lifecycle
in the log, and the container's memory (its processes' anonymous memory) after a warm-up of the
same load, every 10 s, and at the end. `--decoder original` runs the same with MMS's own response decoder put back into the
image's jar: the stress that would have caught its split-frame bug.
Prints and writes one JSON object (bench-results/soak[-original].json).
"""
import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import docker

from bench_serve import jpegs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hostile import Client, bad_requests, mixed_load  # noqa: E402  (the tests' corpus and load, shared)

from byoc.serving.benchmark import percentile  # noqa: E402

IMAGE = os.environ.get("SERVING_IMAGE", "byoc-serving:latest")
# MMS's worker lifecycle: a worker lost, or reconnected and reloading.
RESTART_SIGNS = re.compile(r"Worker disconnected|Retry worker|Unknown exception|Backend worker process died|"
                           r"Load model failed|Invalid message size|Message size exceed limit")
PATCHED_JAR = "/opt/byoc/mms/model-server.jar"
# Inside the image: the patched jar with MMS's own decoder class put back (--decoder original).
UNPATCH = ("import mms, os, zipfile\n"
           "original = os.path.dirname(mms.__file__) + '/frontend/model-server.jar'\n"
           "name = 'com/amazonaws/ml/mms/util/codec/ModelResponseDecoder.class'\n"
           "with zipfile.ZipFile(original) as z: decoder = z.read(name)\n"
           "seen = set()\n"
           "with zipfile.ZipFile('" + PATCHED_JAR + "') as src, zipfile.ZipFile('/out/model-server.jar', 'w') as dst:\n"
           "    for item in src.infolist():\n"
           "        if item.filename not in seen:\n"
           "            seen.add(item.filename)\n"
           "            dst.writestr(item, decoder if item.filename == name else src.read(item))\n")


def anon_memory_mib(container) -> float:
    """The container's processes' anonymous memory (cgroup v1 total_rss, v2 anon): no page cache."""
    stats = container.stats(stream=False)["memory_stats"]["stats"]
    return round(stats.get("total_rss", stats.get("anon", 0)) / (1 << 20), 1)


def sample_memory(container, samples: list, seconds: float) -> None:
    """The container's memory every 10 s while the load runs."""
    for _ in range(int(seconds // 10) - 1 if seconds % 10 == 0 else int(seconds // 10)):
        time.sleep(10)
        samples.append(anon_memory_mib(container))


def wait_ready(host: str, port: int, body: bytes, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if Client(host, port).post(body, {"Content-Type": "image/jpeg"})[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not answer within 180 s")


def start(client, args, model_dir: Path, jar_dir: Path | None):
    volumes = {str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}}
    if jar_dir:
        volumes[str(jar_dir / "model-server.jar")] = {"bind": PATCHED_JAR, "mode": "ro"}
    container = client.containers.run(IMAGE, ["serve"], detach=True, environment=args.environment,
                                      volumes=volumes, mem_limit=args.memory)
    container.reload()
    return container, container.attrs["NetworkSettings"]["IPAddress"]


def measure(client, args, model_dir: Path, jar_dir: Path | None) -> dict:
    good, bad = jpegs(Path(args.data), 200), bad_requests()
    container, host = start(client, args, model_dir, jar_dir)
    try:
        wait_ready(host, 8080, good[0])
        mixed_load(host, 8080, good, bad, args.warm_up, args.clients)  # the JVM compiles its hot paths
        mark, samples = len(container.logs()), [anon_memory_mib(container)]
        sampler = threading.Thread(target=sample_memory, args=(container, samples, args.seconds), daemon=True)
        started = time.perf_counter()
        sampler.start()
        results = mixed_load(host, 8080, good, bad, args.seconds, args.clients)
        elapsed = time.perf_counter() - started
        sampler.join()
        samples.append(anon_memory_mib(container))
        time.sleep(2)  # MMS logs asynchronously
        logs = container.logs()[mark:].decode(errors="replace")
        return summarise(args, results, elapsed, samples, logs, len(bad))
    finally:
        container.remove(force=True)


def summarise(args, results, elapsed, samples, logs, bad_kinds) -> dict:
    good_ms = [ms for kind, status, _, ms in results if kind == "good" and status == 200]
    wrong = Counter(f"{kind} {status} (expected {expected})" for kind, status, expected, _ in results
                    if status != expected)
    return {
        "image": IMAGE, "decoder": args.decoder, "environment": args.environment, "memory_limit": args.memory,
        "clients": args.clients, "seconds": round(elapsed, 1), "requests": len(results),
        "bad_share": round(sum(kind == "bad" for kind, *_ in results) / max(1, len(results)), 3),
        "bad_kinds": bad_kinds,
        "good_per_sec": round(len(good_ms) / elapsed, 2),
        "good_ms_p50": round(percentile(good_ms, 0.5), 1) if good_ms else None,
        "good_ms_p99": round(percentile(good_ms, 0.99), 1) if good_ms else None,
        "statuses": dict(sorted(Counter(str(status) for _, status, *_ in results).items())),
        "unexpected": dict(wrong),
        "status_5xx": sum(status >= 500 or status == 0 for _, status, *_ in results),
        "worker_restart_lines": RESTART_SIGNS.findall(logs),
        "worker_restarts": logs.count("Retry worker"),
        "memory_mib_start": samples[0], "memory_mib_end": samples[-1], "memory_mib_every_10_s": samples,
        "memory_change": round((samples[-1] - samples[0]) / samples[0], 3),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="serving soak benchmark")
    parser.add_argument("--data", default=os.environ.get("DATA_DIR", "data/fashion-mnist"))
    parser.add_argument("--out", default=os.environ.get("BENCH_DIR", "bench-results"))
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warm-up", type=float, default=30,
                        help="seconds of the same load first: the JVM compiles, the worker's allocator grows")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--architecture", default="resnet50", help="of the model made for the run")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--memory", default="6g", help="the container's memory limit")
    parser.add_argument("--decoder", choices=["patched", "original"], default="patched")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for the container")
    args = parser.parse_args()
    args.environment = dict(item.split("=", 1) for item in args.env)
    return args


def main() -> None:
    args = parse_args()
    client = docker.from_env()
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    os.chmod(work, 0o755)
    client.containers.run(IMAGE, ["python", "-m", "byoc.serving.benchmark", "--make-model", "/w/model",
                                  "--architecture", args.architecture, "--crop", str(args.crop)],
                          volumes={str(work): {"bind": "/w", "mode": "rw"}}, remove=True, network_mode="none")
    jar_dir = None
    if args.decoder == "original":
        jar_dir = work / "jar"
        jar_dir.mkdir()
        client.containers.run(IMAGE, ["python3", "-c", UNPATCH], volumes={str(jar_dir): {"bind": "/out"}},
                              remove=True, network_mode="none")
    result = measure(client, args, work / "model", jar_dir)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    name = "soak.json" if args.decoder == "patched" else "soak-original.json"
    (Path(args.out) / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
