"""bench_serve --split, --thread-cpu and --paired: the worker clock wraps what MMS's Python worker calls, the
split adds up, each thread's CPU is counted, the bare model answers a call per line, and the log is read
only once it holds every answered request's line."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_serve  # noqa: E402  (a script)

CHECK = """
import sys
from mms import service
from mms.protocol import otf_message_handler
otf_message_handler.retrieve_msg = lambda connection: (b"I", ["message"])  # stand-ins for the socket
service.Service.predict = lambda self, batch: b"answer"
sys.path.insert(0, sys.argv[1])
import worker_clock  # wraps them, as the .pth line does before MMS's worker starts
from mms import model_service_worker
assert model_service_worker.retrieve_msg is otf_message_handler.retrieve_msg  # the worker calls the clock's
assert otf_message_handler.retrieve_msg(None) == (b"I", ["message"])
assert service.Service.predict(None, ["message"]) == b"answer"
"""


def test_the_worker_clock_times_each_message_mms_worker_reads_and_answers(tmp_path):
    subprocess.run([sys.executable, "-c", CHECK, str(ROOT / "scripts")], check=True,
                   env={"BYOC_BENCH_CLOCK_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    [received, ready] = bench_serve.clock_lines(tmp_path)[0]
    assert len(bench_serve.clock_lines(tmp_path)) == 1 and 0 < received <= ready


def test_the_worker_clock_does_nothing_unless_asked(tmp_path):
    check = ("import sys; sys.path.insert(0, sys.argv[1]); import worker_clock\n"
             "from mms.protocol import otf_message_handler as p; assert p.retrieve_msg.__name__ == 'retrieve_msg'")
    subprocess.run([sys.executable, "-c", check, str(ROOT / "scripts")], check=True, env={"PATH": "/usr/bin:/bin"})


def test_the_time_outside_the_worker_splits_into_the_trip_there_the_workers_glue_and_the_trip_back():
    spans = [(10.000, 10.030), (11.000, 11.040)]  # client: sent, answer read (s)
    clock = [(10.001, 10.028), (11.002, 11.037)]  # worker: message read, answer ready (s)
    c1_worker = [(1, 1, 1.0, 25.0), (1, 1, 1.0, 33.0)]  # its log: inputs, model (ms)
    split = bench_serve.split_outside(spans, clock, c1_worker)
    assert split == {"c1_to_worker_ms_p50": pytest.approx(1.5),
                     "c1_worker_beyond_inputs_and_model_ms_p50": pytest.approx(1.0),
                     "c1_back_from_worker_ms_p50": pytest.approx(2.5)}


class OwnProcess:
    """Stands in for a container whose only process is this one (docker's top: host PIDs)."""

    def top(self, ps_args: str) -> dict:
        assert ps_args == "-eo pid"
        return {"Titles": ["PID"], "Processes": [[str(os.getpid())]]}


def test_thread_cpu_counts_the_cpu_each_thread_used_between_two_readings():
    before = bench_serve.thread_cpu_ms(OwnProcess())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # this thread only: the others sleep
        pass
    used = bench_serve.cpu_used(before, bench_serve.thread_cpu_ms(OwnProcess()))
    name = Path("/proc/self/comm").read_text().strip()
    assert 200 <= used[f"{name}/{name}"] <= 600, used
    assert bench_serve.cpu_used({"a/b": 5.0, "a/c": 1.0}, {"a/b": 9.0, "a/c": 40.0, "a/d": 25.0}) == {"a/c": 39,
                                                                                                      "a/d": 25}


def test_the_paired_bare_model_times_one_call_per_line_until_its_input_ends(tmp_path):
    """byoc.serving.benchmark --paired, as bench_serve drives it through docker exec's stdin."""
    from byoc.serving import benchmark
    benchmark.make_model(str(tmp_path), "small_cnn", classes=10, crop=28)
    process = subprocess.Popen([sys.executable, "-m", "byoc.serving.benchmark", "--model", str(tmp_path), "--paired",
                                "--threads", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "BYOC_CPU_GRAPH": "eager"})
    ready = json.loads(process.stdout.readline())
    assert ready["precision"].startswith("fp32") and ready["graph"] is False
    calls = []
    for _ in range(3):
        process.stdin.write("\n")
        process.stdin.flush()
        calls.append(float(process.stdout.readline()))
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    assert len(calls) == 3 and all(0 < ms < 5000 for ms in calls)


class GrowingLog:
    """Stands in for a container whose worker logs a forward pass a moment after each answer."""

    def __init__(self, lines: int):
        self.lines, self.reads = lines, 0

    def logs(self) -> bytes:
        self.reads += 1
        shown = min(self.lines, self.reads)  # one more line with each look
        return b"".join(b"forward pass: 1 request(s), 1 image(s); inputs 1.0 ms, model 2.0 ms\n" for _ in range(shown))


def test_the_log_mark_waits_for_the_lines_of_requests_already_answered():
    log = GrowingLog(lines=4)
    assert bench_serve.settled_log_length(log, requests=4) == len(log.logs()) and log.reads >= 4


def test_the_warm_up_is_reported_by_block_of_requests_after_start():
    warm_up = [10.0 + (3 if i < 20 else 1) for i in range(150)]  # ms in all; 4 of them inputs and model
    lines = [(1, 1, 1.0, 3.0)] * 150
    assert bench_serve.early_outside(warm_up, lines) == {
        "warm_up_outside_worker_ms_p50": {"1-20": 9.0, "21-100": 7.0, "101-150": 7.0}}
    assert bench_serve.early_outside(warm_up, lines[:-1]) == {}  # a batch joined two: no split
    assert bench_serve.early_outside([], []) == {}
