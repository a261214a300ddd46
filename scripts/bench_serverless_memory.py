"""make bench-serverless-memory: the smallest serverless memory size the serving image runs in.

For each model, made inside the image with random weights (memory does not depend on their
values): small_cnn at 28 px with 10 classes (the tests' Fashion-MNIST model) and ResNet-50 at
224 px with 133 classes (the dog-breed model). For each serverless size from the smallest up
(1024, 2048, ... 6144 MB), the serving image runs with that much memory and no swap (docker's
mem_limit = memswap_limit), as a serverless endpoint's container gets it. A size works when
/ping answers 200 within 180 s (serverless endpoints allow 3 minutes for the model download and
the first ping), one request is answered, and then a burst of 8 at once (the default dynamic
batch) is answered too, without the container being killed. Stops at the first size that works
for each model unless --all. Prints a table and writes bench-results/serverless-memory.json.
"""
import argparse
import io
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests
from PIL import Image

IMAGE = os.environ.get("SERVING_IMAGE", "byoc-serving:latest")
SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
MODELS = {"small_cnn": ("small_cnn", 10, 28), "resnet50": ("resnet50", 133, 224)}
PING_LIMIT_S = 180
MIB = 1024 * 1024


def make_model(client, name: str) -> Path:
    architecture, classes, crop = MODELS[name]
    folder = Path(tempfile.mkdtemp(prefix=f"bench-serverless-{name}-"))
    os.chmod(folder, 0o755)
    client.containers.run(IMAGE, ["python", "-m", "byoc.serving.benchmark", "--make-model", "/m", "--architecture",
                                  architecture, "--classes", str(classes), "--crop", str(crop)],
                          volumes={str(folder): {"bind": "/m", "mode": "rw"}}, remove=True, network_mode="none")
    return folder


def jpeg(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((side, side), 64).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _answered(url: str, body: bytes) -> bool:
    response = requests.post(f"{url}/invocations", data=body, headers={"Content-Type": "image/jpeg"}, timeout=120)
    return response.status_code == 200 and "predictions" in response.json()


def _wait_for_ping(container, url: str) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < PING_LIMIT_S:
        container.reload()
        if container.status == "exited":
            return None
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return None


def run_at(client, model_dir: Path, memory_mb: int, body: bytes, port: int) -> dict:
    container = client.containers.run(
        IMAGE, ["serve"], detach=True, mem_limit=f"{memory_mb}m", memswap_limit=f"{memory_mb}m",
        ports={"8080/tcp": ("127.0.0.1", port)}, volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}},
        labels={"byoc.bench": "serverless-memory"})
    url, found = f"http://127.0.0.1:{port}", {"memory_mb": memory_mb}
    try:
        found["ping_s"] = _wait_for_ping(container, url)
        if found["ping_s"] is not None:
            found["one_request"] = _answered(url, body)
            with ThreadPoolExecutor(8) as pool:
                found["burst_of_8"] = all(pool.map(lambda _: _answered(url, body), range(8)))
            found["ping_s"] = round(found["ping_s"], 1)
    except requests.RequestException as error:
        found["error"] = type(error).__name__
    finally:
        container.reload()
        stats = container.stats(stream=False)["memory_stats"]
        found["peak_mib"] = round(stats.get("max_usage", 0) / MIB)  # cgroup v1: includes page cache
        found["rss_mib"] = round(stats.get("stats", {}).get("rss", 0) / MIB)
        found["oom_killed"] = container.attrs["State"]["OOMKilled"]
        container.remove(force=True)
    found["works"] = bool(found.get("ping_s") is not None and found.get("one_request") and found.get("burst_of_8")
                          and not found["oom_killed"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,resnet50")
    parser.add_argument("--all", action="store_true", help="every size, not only up to the first that works")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--out", default=os.environ.get("BENCH_DIR", "bench-results"))
    args = parser.parse_args()
    client, results = docker.from_env(), {}
    for name in args.models.split(","):
        model_dir, body, rows = make_model(client, name), jpeg(MODELS[name][2] * 2), []
        for memory_mb in SIZES_MB:
            rows.append(run_at(client, model_dir, memory_mb, body, args.port))
            print(f"{name:10s} {memory_mb:5d} MB: {'works' if rows[-1]['works'] else 'fails'} {rows[-1]}", flush=True)
            if rows[-1]["works"] and not args.all:
                break
        results[name] = {"smallest_mb": next((r["memory_mb"] for r in rows if r["works"]), None), "runs": rows}
        shutil.rmtree(model_dir)
    summary = {"image": IMAGE, "cores": os.cpu_count(), "results": results}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "serverless-memory.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({name: r["smallest_mb"] for name, r in results.items()}))


if __name__ == "__main__":
    main()
