"""make bench-serve: latency and throughput of the serving image against its bare model.

Runs on the host (the dev environment: docker SDK). Steps:
  1. a ResNet-50 model package (133 classes, 224 px, random weights) made inside the image;
  2. real JPEGs: Fashion-MNIST test images as 256 px RGB JPEGs;
  3. container start -> first successful /invocations; then the warm-up's lone requests, the first
     after start, each one's time outside the worker's inputs and model, by block (it falls as the
     frontend's JVM compiles its request path);
  4. latency at concurrency 1 (p50, p99), split with the worker's own log into the time
     spent preparing inputs, in the model, and outside the Python worker (HTTP, MMS's
     frontend, batch wait, the frontend-worker socket);
  5. throughput at concurrency 8;
  6. the bare model in the same container (byoc.serving.benchmark): batch-1 latency
     (p50, p99) and throughput at the mean batch the server formed, with the torch threads
     of one server worker;
  7. GET /ping at concurrency 1: the client and MMS's HTTP front end alone, no worker;
  8. with --paired N: N more lone requests, each followed by one batch-1 call of the bare model in
     its own process in the same container (byoc.serving.benchmark --paired). Both are timed in the
     same minute on the same cores, so a shared machine's drift, which moves a p99 by more than the
     server adds to it, falls on both alike: their p99s' difference is what the server adds.
     With it, the range that difference takes over the pairs resampled (5th-95th percentile):
     what chance alone moves it by.
`--architecture small_cnn --crop 28` measures the floor: a model that costs next to nothing.
`--thread-cpu` adds the CPU time each of the container's threads used during the c1 phase: what
competed with the model's torch threads for the cores.
`--split` splits the time outside the worker at c1 into the trip to the worker (HTTP, MMS's frontend,
the batch collection, the socket), the worker's own steps beyond inputs and model (MMS's Python
protocol, the handler's glue) and the trip back, with scripts/worker_clock.py mounted into the image.
Clients keep their connection open, as SageMaker's front end does. By default they talk to
the container's own address: the published port adds Docker's userland proxy, which is not
on SageMaker's path (--target port measures through it, and works on Docker Desktop too).
The bare model runs in the precision the server picks (BYOC_PRECISION, byoc.precision); the
bench model has random weights and no measured agreement, so `auto` serves it in fp32:
`--env BYOC_PRECISION=bf16` measures the fast path.
Prints and writes one JSON object (bench-results/serve.json).
"""
import argparse
import http.client
import io
import json
import os
import random
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import docker
from PIL import Image

from byoc.serving.benchmark import percentile

IMAGE = os.environ.get("SERVING_IMAGE", "byoc-serving:latest")
# Lone requests interleaved with bare-model calls (--paired). A p99 is set by the slowest 1 %, and on a
# shared VM those are calls caught by host stalls of 5-120 ms, in either series: of 600 pairs it is
# each series' 7th slowest, and chance alone (the pairs resampled) moved the median round's difference
# over a range 10 ms wide in runs 14-17; of 2,400, the 25th slowest, 7.2 ms in runs 18-21 (BENCHMARKS.md).
PAIRS = 2400
EARLY_BLOCKS = (20, 100, 300, 600)  # the warm-up's requests are reported in blocks that end here
WORKER_LINE = re.compile(r"forward pass: (\d+) request\(s\), (\d+) image\(s\); inputs ([\d.]+) ms, model ([\d.]+) ms")


def jpegs(data_dir: Path, count: int) -> list[bytes]:
    out = []
    for path in sorted((data_dir / "test").glob("*/*.png"))[:count]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((256, 256), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, host: str, port: int):
        self.connection = http.client.HTTPConnection(host, port, timeout=120)

    def get(self, path: str) -> int:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def answer(self, body: bytes) -> bytes:
        """The server's answer to one JPEG."""
        self.connection.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"/invocations answered {response.status}: {answer[:300]!r}")
        return answer

    def invoke(self, body: bytes) -> float:
        """Milliseconds for one JPEG's prediction."""
        started, answered = self.span(body)
        return 1000 * (answered - started)

    def span(self, body: bytes) -> tuple[float, float]:
        """When one JPEG's request was sent and its answer read (time.perf_counter)."""
        started = time.perf_counter()
        self.answer(body)
        return started, time.perf_counter()


def timed_ping(client: Client) -> float:
    started = time.perf_counter()
    client.get("/ping")
    return 1000 * (time.perf_counter() - started)


def address(container, target: str, port: int) -> tuple[str, int]:
    if target == "port":
        return "127.0.0.1", port
    container.reload()
    return container.attrs["NetworkSettings"]["IPAddress"], 8080


def wait_for_first_answer(container, host: str, port: int, body: bytes, started: float) -> None:
    while True:
        try:
            client = Client(host, port)
            if client.get("/ping") == 200:
                client.invoke(body)
                return
        except (OSError, http.client.HTTPException):
            pass
        if time.perf_counter() - started > 120:
            raise SystemExit("the server did not answer within 120 s:\n" + container.logs(tail=50).decode())
        time.sleep(0.05)


def settled_log_length(container, requests: int) -> int:
    """The log's length in bytes once it holds the forward passes of `requests` requests: MMS logs
    asynchronously, so the line of a request already answered can still be on its way."""
    deadline = time.monotonic() + 10
    while True:
        logs = container.logs()
        logged = sum(int(line[0]) for line in WORKER_LINE.findall(logs.decode(errors="replace")))
        if logged >= requests or time.monotonic() > deadline:
            return len(logs)
        time.sleep(0.05)


class PairedBareModel:
    """The bare model in a process of its own in the server's container (byoc.serving.benchmark
    --paired), driven through `docker exec`'s stdin: call() runs one timed batch-1 forward pass."""

    def __init__(self, container, threads: int):
        api = container.client.api
        command = ["python", "-m", "byoc.serving.benchmark", "--model", "/opt/ml/model", "--paired",
                   "--threads", str(threads)]
        exec_id = api.exec_create(container.id, command, stdin=True, stdout=True, stderr=True)["Id"]
        self.socket = api.exec_start(exec_id, socket=True)
        self.raw = getattr(self.socket, "_sock", self.socket)  # the connection under docker's wrapper
        self.stdout, self.stderr = b"", b""
        self.ready = json.loads(self.line())

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.raw.recv(size - len(data))
            if not chunk:
                raise RuntimeError(f"the bare model's process ended: {self.stderr.decode(errors='replace')[-2000:]}")
            data += chunk
        return data

    def line(self) -> str:
        """Its next line of output (docker multiplexes the streams: an 8-byte header per frame)."""
        while b"\n" not in self.stdout:
            header = self._exactly(8)
            frame = self._exactly(int.from_bytes(header[4:], "big"))
            if header[0] == 2:
                self.stderr += frame
            else:
                self.stdout += frame
        line, self.stdout = self.stdout.split(b"\n", 1)
        return line.decode()

    def call(self) -> float:
        """Milliseconds of one forward pass, as the bare model's process timed it."""
        self.raw.sendall(b"\n")
        return float(self.line())

    def close(self) -> None:
        try:
            self.raw.shutdown(socket.SHUT_WR)  # its stdin ends, and so does it
        except OSError:
            pass
        self.socket.close()


def paired(client: "Client", bare: PairedBareModel, bodies: list[bytes], count: int) -> tuple[list, list]:
    """count lone requests to the server, each followed by one call of the bare model: ms of each."""
    served, raw = [], []
    for i in range(count):
        served.append(client.invoke(bodies[i % len(bodies)]))
        raw.append(bare.call())
    return served, raw


def p99_difference(served: list[float], bare: list[float]) -> float:
    """What the c1 tail goal judges: the served lone requests' p99 minus the bare model's (ms)."""
    return percentile(served, 0.99) - percentile(bare, 0.99)


def chance_range(served: list[float], bare: list[float], draws: int = 1000) -> tuple[float, float]:
    """The 5th and 95th percentiles of p99_difference over the pairs resampled with replacement: how
    far a p99 difference of this many pairs moves by chance alone (a p99 of 2,400 is their 25th slowest)."""
    rng = random.Random(0)  # the same pairs always give the same range
    differences = []
    for _ in range(draws):
        drawn = [rng.randrange(len(served)) for _ in served]
        differences.append(p99_difference([served[i] for i in drawn], [bare[i] for i in drawn]))
    return percentile(differences, 0.05), percentile(differences, 0.95)


def worker_lines(container, since: int, requests: int) -> list[tuple[int, int, float, float]]:
    """(requests, images, inputs ms, model ms) of each forward pass logged after byte `since`."""
    deadline = time.monotonic() + 10  # MMS logs asynchronously: wait for the lines of all requests
    while True:
        logs = container.logs()[since:].decode(errors="replace")
        lines = [(int(r), int(i), float(inputs), float(model)) for r, i, inputs, model in WORKER_LINE.findall(logs)]
        if sum(line[0] for line in lines) >= requests or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def worker_clock(args) -> tuple[Path | None, dict, dict]:
    """With --split: a directory for scripts/worker_clock.py's lines, and the volumes and environment
    that load it into the image's Python (a .pth line in its site-packages)."""
    if not args.split:
        return None, {}, {}
    clock_dir = Path(tempfile.mkdtemp(prefix="bench-serve-clock-"))
    os.chmod(clock_dir, 0o777)  # the workers run as the image's unprivileged user
    (clock_dir / "load.pth").write_text("import byoc_bench_worker_clock\n")
    site = "/opt/venv/lib/python3.11/site-packages"  # the serving image's venv (containers/Dockerfile)
    hook = Path(__file__).with_name("worker_clock.py")
    volumes = {str(hook): {"bind": f"{site}/byoc_bench_worker_clock.py", "mode": "ro"},
               str(clock_dir / "load.pth"): {"bind": f"{site}/zz_byoc_bench_worker_clock.pth", "mode": "ro"},
               str(clock_dir): {"bind": "/bench-clock", "mode": "rw"}}
    return clock_dir, volumes, {"BYOC_BENCH_CLOCK_DIR": "/bench-clock"}


def clock_lines(clock_dir: Path | None) -> list[tuple[float, float]]:
    """(message read, answer ready) of every prediction so far, in order."""
    if clock_dir is None:
        return []
    return sorted(tuple(map(float, line.split())) for path in clock_dir.glob("worker-*.txt")
                  for line in path.read_text().splitlines() if line.strip())


def split_outside(spans, clock, c1_worker) -> dict:
    """Per request: to the worker, inside it beyond inputs and model, and back; p50 of each (ms)."""
    to_worker = [1000 * (received - started) for (started, _), (received, _) in zip(spans, clock)]
    back = [1000 * (answered - ready) for (_, answered), (_, ready) in zip(spans, clock)]
    glue = [1000 * (ready - received) - inputs - model
            for (received, ready), (_, _, inputs, model) in zip(clock, c1_worker)]
    return {"c1_to_worker_ms_p50": round(statistics.median(to_worker), 2),
            "c1_worker_beyond_inputs_and_model_ms_p50": round(statistics.median(glue), 2),
            "c1_back_from_worker_ms_p50": round(statistics.median(back), 2)}


def thread_cpu_ms(container) -> dict[str, float]:
    """CPU ms so far of each of the container's threads, summed by "process/thread" name (the kernel
    cuts names at 15 characters), from the host's /proc: a Linux engine only, where `docker top`
    gives the host's PIDs. Elsewhere, or for threads that have exited, nothing."""
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for [pid] in container.top(ps_args="-eo pid")["Processes"]:
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                text, process = stat.read_text(), Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue  # it exited meanwhile
            fields = text[text.rindex(")") + 2:].split()  # utime and stime are fields 14 and 15
            key = f"{process}/{text[text.index('(') + 1:text.rindex(')')]}"
            found[key] = found.get(key, 0) + 1000 * (int(fields[11]) + int(fields[12])) / tick
    return found


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """What each thread name used between two thread_cpu_ms readings, the largest first (10 ms and up)."""
    used = {name: ms - before.get(name, 0) for name, ms in after.items()}
    return {name: round(ms) for name, ms in sorted(used.items(), key=lambda item: -item[1]) if ms >= 10}


def concurrency_8(host: str, port: int, bodies: list[bytes], seconds: float) -> tuple[float, int]:
    """Images per second from eight clients, each with its own connection, and the requests sent."""
    done, stop, lock = [0], time.perf_counter() + seconds, threading.Lock()

    def client_loop(offset: int):
        client, i = Client(host, port), offset
        while time.perf_counter() < stop:
            client.invoke(bodies[i % len(bodies)])
            i += 8
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.perf_counter() - started), done[0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="serving benchmark")
    parser.add_argument("--data", default=os.environ.get("DATA_DIR", "data/fashion-mnist"))
    parser.add_argument("--out", default=os.environ.get("BENCH_DIR", "bench-results"))
    parser.add_argument("--requests", type=int, default=200, help="requests at concurrency 1")
    parser.add_argument("--warm-up", type=int, default=50,
                        help="lone requests before the c1 phase, reported by block (the JVM compiles hot paths)")
    parser.add_argument("--seconds", type=float, default=60, help="duration at concurrency 8")
    parser.add_argument("--target", choices=["container", "port"], default="container",
                        help="the container's address, or the published port on 127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--architecture", default="resnet50", help="of the model made for the run")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for the container")
    parser.add_argument("--paired", type=int, default=PAIRS, metavar="N",
                        help="lone requests, each followed by a call of the bare model in the same container "
                             "(0: none)")
    parser.add_argument("--split", action="store_true", help="split the time outside the worker (scripts/worker_clock.py)")
    parser.add_argument("--thread-cpu", action="store_true",
                        help="the CPU each of the container's threads used during the c1 phase (a Linux engine)")
    args = parser.parse_args()
    if args.paired < 0:
        parser.error("--paired takes a count of 0 or more")
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    args.environment = dict(item.split("=", 1) for item in args.env)
    return args


def measure(client, args, model_dir: Path, bodies: list[bytes], image: str = IMAGE) -> dict:
    """Start the server, time it at concurrency 1 and 8, then time the bare model in the same container."""
    clock_dir, clock_volumes, clock_environment = worker_clock(args)
    started = time.perf_counter()
    container = client.containers.run(image, ["serve"], detach=True,
                                      environment={**args.environment, **clock_environment},
                                      ports={"8080/tcp": ("127.0.0.1", args.port)},
                                      volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}, **clock_volumes})
    try:
        host, port = address(container, args.target, args.port)
        wait_for_first_answer(container, host, port, bodies[0], started)
        found = {"start_to_first": time.perf_counter() - started, "host": host, "port": port}
        found["server_line"] = next((line for line in container.logs().decode().splitlines()
                                     if "worker(s) x" in line), "")
        threads_per_worker = int(re.search(r"x (\d+) thread", found["server_line"]).group(1))
        c1_client = Client(host, port)
        found["first_answer"] = json.loads(c1_client.answer(bodies[0]))
        sent = 2  # the first answer's two requests
        log_mark = settled_log_length(container, sent)
        found["warm_up"] = [c1_client.invoke(bodies[i % len(bodies)]) for i in range(args.warm_up)]
        found["warm_up_worker"] = worker_lines(container, log_mark, args.warm_up)
        sent += args.warm_up
        log_mark, clock_mark = settled_log_length(container, sent), len(clock_lines(clock_dir))
        cpu_before = thread_cpu_ms(container) if args.thread_cpu else {}
        found["c1_spans"] = [c1_client.span(bodies[i % len(bodies)]) for i in range(args.requests)]
        found["c1_thread_cpu_ms"] = cpu_used(cpu_before, thread_cpu_ms(container)) if args.thread_cpu else {}
        found["c1"] = [1000 * (answered - sent) for sent, answered in found["c1_spans"]]
        found["c1_worker"] = worker_lines(container, log_mark, len(found["c1"]))
        found["c1_clock"] = clock_lines(clock_dir)[clock_mark:]  # written before each answer was sent
        found["ping"] = [timed_ping(c1_client) for _ in range(args.requests)]
        sent += args.requests
        if args.paired:
            bare = PairedBareModel(container, threads_per_worker)
            try:
                found["paired_c1"], found["paired_bare"] = paired(c1_client, bare, bodies, args.paired)
            finally:
                bare.close()
            sent += args.paired

        log_mark = settled_log_length(container, sent)
        found["c8_throughput"], c8_requests = concurrency_8(host, port, bodies, args.seconds)
        found["mean_batch"] = statistics.mean(images for _, images, _, _ in worker_lines(container, log_mark,
                                                                                          c8_requests))
        found["raw"] = json.loads(container.exec_run(
            ["python", "-m", "byoc.serving.benchmark", "--model", "/opt/ml/model", "--calls", str(args.requests),
             "--batch", str(max(1, round(found["mean_batch"]))), "--threads", str(threads_per_worker)]).output
            .decode().strip().splitlines()[-1])
        return found
    finally:
        container.remove(force=True)


def outside_worker(totals: list[float], lines: list[tuple]) -> list[float]:
    """Each lone request's ms outside the worker's inputs and model (its forward-pass line)."""
    return [total - line[2] - line[3] for total, line in zip(totals, lines)]


def early_outside(warm_up: list[float], lines: list[tuple]) -> dict:
    """The warm-up requests, the first after start, by block: the median ms each spent outside the
    worker's inputs and model, which falls as the frontend's JVM compiles its request path."""
    if not warm_up or len(lines) != len(warm_up):
        return {}
    outside = outside_worker(warm_up, lines)
    edges = [0] + [edge for edge in EARLY_BLOCKS if edge < len(outside)] + [len(outside)]
    return {"warm_up_outside_worker_ms_p50": {f"{start + 1}-{end}": round(statistics.median(outside[start:end]), 2)
                                              for start, end in zip(edges, edges[1:])}}


def summary(args, found: dict) -> dict:
    c1, c1_worker, raw = found["c1"], found["c1_worker"], found["raw"]
    result = {
        "image": IMAGE, "model": f"{args.architecture}, 133 classes, {args.crop} px (random weights)",
        "environment": args.environment,
        "server": found["server_line"], "cores": os.cpu_count(),
        "target": f"{args.target} ({found['host']}:{found['port']}), keep-alive connections",
        "start_to_first_invocation_s": round(found["start_to_first"], 2),
        "c1_requests": len(c1), "c1_latency_ms_p50": round(statistics.median(c1), 1),
        "c1_latency_ms_p99": round(percentile(c1, 0.99), 1),
        "c1_ping_ms_p50": round(statistics.median(found["ping"]), 2),
    }
    result.update(early_outside(found.get("warm_up", []), found.get("warm_up_worker", [])))
    if len(c1_worker) != len(c1):
        print(f"warning: {len(c1_worker)} forward passes logged for {len(c1)} requests; no split of their time")
    else:  # one forward pass per request: split each request's time
        inputs = [line[2] for line in c1_worker]
        model = [line[3] for line in c1_worker]
        outside = outside_worker(c1, c1_worker)
        result.update({
            "c1_inputs_ms_p50": round(statistics.median(inputs), 1),
            "c1_model_ms_p50": round(statistics.median(model), 1),
            "c1_model_ms_p99": round(percentile(model, 0.99), 1),
            "c1_outside_worker_ms_p50": round(statistics.median(outside), 1),
            "c1_outside_worker_ms_p99": round(percentile(outside, 0.99), 1),
        })
        if args.split and len(found["c1_clock"]) != len(c1):
            print(f"warning: the worker clock noted {len(found['c1_clock'])} messages for {len(c1)} requests; no split")
        elif args.split:
            result.update(split_outside(found["c1_spans"], found["c1_clock"], c1_worker))
    if args.thread_cpu:
        result["c1_seconds"] = round(found["c1_spans"][-1][1] - found["c1_spans"][0][0], 1)
        result["c1_thread_cpu_ms"] = found["c1_thread_cpu_ms"]  # the worker's torch threads first
    result.update({"c8_seconds": args.seconds, "c8_images_per_sec": round(found["c8_throughput"], 2),
                   "c8_mean_server_batch": round(found["mean_batch"], 2), **raw})
    result["served_over_raw_throughput"] = round(found["c8_throughput"] / raw["raw_images_per_sec"], 3)
    if found.get("paired_c1"):
        served, bare = found["paired_c1"], found["paired_bare"]
        result.update({"paired_requests": len(served),
                       "paired_c1_ms_p50": round(statistics.median(served), 1),
                       "paired_c1_ms_p99": round(percentile(served, 0.99), 1),
                       "paired_bare_ms_p50": round(statistics.median(bare), 1),
                       "paired_bare_ms_p99": round(percentile(bare, 0.99), 1)})
        result["paired_c1_p99_minus_bare_p99_ms"] = round(result["paired_c1_ms_p99"] - result["paired_bare_ms_p99"], 1)
        result["paired_p99_difference_chance_range_ms"] = [round(end, 1) for end in chance_range(served, bare)]
    result["c1_p99_minus_raw_p50_ms"] = round(result["c1_latency_ms_p99"] - raw["raw_latency_ms_p50"], 1)
    result["c1_p99_minus_raw_p99_ms"] = round(result["c1_latency_ms_p99"] - raw["raw_latency_ms_p99"], 1)
    result["c1_p50_minus_raw_p50_ms"] = round(result["c1_latency_ms_p50"] - raw["raw_latency_ms_p50"], 1)
    return result


def main() -> None:
    args = parse_args()
    client = docker.from_env()
    bodies = jpegs(Path(args.data), 200)
    model_dir = Path(tempfile.mkdtemp(prefix="bench-serve-model-"))
    os.chmod(model_dir, 0o755)
    client.containers.run(IMAGE, ["python", "-m", "byoc.serving.benchmark", "--make-model", "/m",
                                  "--architecture", args.architecture, "--crop", str(args.crop)],
                          volumes={str(model_dir): {"bind": "/m", "mode": "rw"}}, remove=True, network_mode="none")
    result = summary(args, measure(client, args, model_dir, bodies))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
