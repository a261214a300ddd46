"""make bench-serve: latency and throughput of the serving image against its bare model.

Runs on the host (the dev environment: docker SDK, requests). Steps:
  1. a ResNet-50 model package (133 classes, 224 px, random weights) made inside the image;
  2. real JPEGs: Fashion-MNIST test images as 256 px RGB JPEGs;
  3. container start -> first successful /invocations;
  4. latency at concurrency 1 (p50, p99) and throughput at concurrency 8;
  5. the bare model in the same container (byoc.benchmarks.serving_raw) at batch 1 and at the
     mean batch the server formed, with the torch threads of one server worker.
Prints and writes one JSON object (bench-results/serve.json).
"""
import argparse
import io
import json
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import docker
import requests
from PIL import Image

IMAGE = os.environ.get("SERVING_IMAGE", "byoc-serving:latest")


def jpegs(data_dir: Path, count: int) -> list[bytes]:
    out = []
    for path in sorted((data_dir / "test").glob("*/*.png"))[:count]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((256, 256), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def invoke(url: str, body: bytes) -> float:
    started = time.perf_counter()
    response = requests.post(f"{url}/invocations", data=body, headers={"Content-Type": "image/jpeg"}, timeout=120)
    response.raise_for_status()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description="serving benchmark")
    parser.add_argument("--data", default=os.environ.get("DATA_DIR", "data/fashion-mnist"))
    parser.add_argument("--out", default=os.environ.get("BENCH_DIR", "bench-results"))
    parser.add_argument("--requests", type=int, default=200, help="requests at concurrency 1")
    parser.add_argument("--seconds", type=float, default=60, help="duration at concurrency 8")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the container")
    args = parser.parse_args()
    client = docker.from_env()
    bodies = jpegs(Path(args.data), 200)
    model_dir = Path(tempfile.mkdtemp(prefix="bench-serve-model-"))
    os.chmod(model_dir, 0o755)
    client.containers.run(IMAGE, ["python", "-m", "byoc.benchmarks.serving_raw", "--make-model", "/m"],
                          volumes={str(model_dir): {"bind": "/m", "mode": "rw"}}, remove=True, network_mode="none")
    environment = dict(item.split("=", 1) for item in args.env)

    started = time.perf_counter()
    container = client.containers.run(IMAGE, ["serve"], detach=True, environment=environment,
                                      ports={"8080/tcp": ("127.0.0.1", args.port)},
                                      volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}})
    url = f"http://127.0.0.1:{args.port}"
    try:
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    invoke(url, bodies[0])
                    break
            except requests.RequestException:
                pass
            if time.perf_counter() - started > 120:
                raise SystemExit("the server did not answer within 120 s:\n" + container.logs(tail=50).decode())
            time.sleep(0.05)
        start_to_first = time.perf_counter() - started

        for body in bodies[:10]:  # warm-up
            invoke(url, body)
        c1 = [invoke(url, bodies[i % len(bodies)]) for i in range(args.requests)]

        log_mark = len(container.logs())
        done, stop, lock = [0], time.perf_counter() + args.seconds, threading.Lock()

        def client_loop(offset: int):
            i = offset
            while time.perf_counter() < stop:
                invoke(url, bodies[i % len(bodies)])
                i += 8
                with lock:
                    done[0] += 1

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
        c8_started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c8_throughput = done[0] / (time.perf_counter() - c8_started)
        logs = container.logs().decode(errors="replace")[log_mark:]
        sizes = [int(n) for n in re.findall(r"forward pass: \d+ request\(s\), (\d+) image", logs)]
        mean_batch = statistics.mean(sizes) if sizes else 1
        server_line = next((line for line in container.logs().decode().splitlines() if "worker(s) x" in line), "")
        threads_per_worker = int(re.search(r"x (\d+) thread", server_line).group(1))
        raw = json.loads(container.exec_run(
            ["python", "-m", "byoc.benchmarks.serving_raw", "--model", "/opt/ml/model",
             "--batch", str(max(1, round(mean_batch))), "--threads", str(threads_per_worker)]).output.decode()
            .strip().splitlines()[-1])
    finally:
        container.remove(force=True)

    result = {
        "image": IMAGE, "model": "resnet50, 133 classes, 224 px (random weights)", "environment": environment,
        "server": server_line, "cores": os.cpu_count(),
        "start_to_first_invocation_s": round(start_to_first, 2),
        "c1_requests": len(c1), "c1_latency_ms_p50": round(1000 * statistics.median(c1), 1),
        "c1_latency_ms_p99": round(1000 * percentile(c1, 0.99), 1),
        "c8_seconds": args.seconds, "c8_images_per_sec": round(c8_throughput, 2),
        "c8_mean_server_batch": round(mean_batch, 2), **raw,
    }
    result["served_over_raw_throughput"] = round(c8_throughput / raw["raw_images_per_sec"], 3)
    result["c1_p99_minus_raw_latency_ms"] = round(result["c1_latency_ms_p99"] - raw["raw_latency_ms_p50"], 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
