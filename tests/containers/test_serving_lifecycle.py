"""Readiness, shutdown and processes: /ping means ready, SIGTERM stops cleanly, no root, no zombies."""
import json
import shutil
import time

import pytest
import requests
from safetensors.torch import load_file, save_file

from support import post_image, start_serving

pytestmark = pytest.mark.docker
# Kill the process that runs the model (a worker's child), as the OOM killer would.
KILL_WORKER = ("import os, psutil\n"
               "workers = [p for p in psutil.process_iter(['cmdline']) if p.pid != os.getpid()\n"
               "           and 'model_service_worker' in ' '.join(p.info['cmdline'] or [])]\n"
               "for p in workers:\n"
               "    if p.ppid() in {w.pid for w in workers}: p.kill()\n")
# The names of the frontend JVM's threads (its JIT compilers among them).
JVM_THREADS = ("import pathlib, psutil\n"
               "java = next(p for p in psutil.process_iter(['name']) if p.info['name'] == 'java')\n"
               "print(sorted({t.read_text().strip() for t in pathlib.Path(f'/proc/{java.pid}/task').glob('*/comm')}))")


def processes(container) -> list[dict]:
    top = container.top(ps_args="-eo pid,user,stat,args")
    return [dict(zip(top["Titles"], row)) for row in top["Processes"]]


def _zero_bytes(model):
    (model / "model.safetensors").write_bytes(b"\0" * 1000)


def _nan(model):
    weights = load_file(model / "model.safetensors")
    save_file({k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in weights.items()},
              model / "model.safetensors")


def _three_classes(model):
    document = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**document, "class_names": ["a", "b", "c"]}))


def _nested(model):
    inner = model / "outdir"
    inner.mkdir()
    for name in ("model.json", "model.safetensors"):
        (model / name).rename(inner / name)


BROKEN = {
    "zero-filled weights": (_zero_bytes, "model.safetensors is not a safetensors file"),
    "NaN weights": (_nan, "holds NaN or infinite values"),
    "a class list the head does not have": (_three_classes, "with 3 classes (model.json) needs [3]"),
    "the package one folder deeper": (_nested, "the package is one folder too deep"),
}


@pytest.mark.parametrize("spoil, says", BROKEN.values(), ids=BROKEN)
def test_a_model_that_cannot_serve_stops_serve_with_one_line_naming_the_file(docker_client, trained, tmp_path,
                                                                              spoil, says):
    """Before, its workers failed to load it again and again (or served NaN probabilities) and /ping
    answered 503 until SageMaker's health check gave up."""
    model = tmp_path / "model"
    shutil.copytree(trained.opt_ml / "model", model)
    spoil(model)
    endpoint = start_serving(docker_client, model, ready=False)
    try:
        exit_code = endpoint.container.wait(timeout=60)["StatusCode"]
        logs = endpoint.container.logs().decode(errors="replace")
        assert exit_code != 0 and "Traceback" not in logs, logs
        reason = [line for line in logs.splitlines() if line.startswith("serve: cannot serve: ")]
        assert len(reason) == 1 and says in reason[0], logs
    finally:
        endpoint.container.remove(force=True)


def test_first_invocation_after_ping_succeeds_at_once(docker_client, trained, small_data):
    endpoint = start_serving(docker_client, trained.opt_ml / "model")  # returns at the first 200 from /ping
    try:
        started = time.monotonic()
        response = post_image(f"{endpoint.url}/invocations", next((small_data / "test" / "004.Dress").glob("*.png")))
        assert response.status_code == 200
        assert time.monotonic() - started < 2, "the first request waited for the model to load"
    finally:
        endpoint.container.remove(force=True)


def test_model_server_runs_unprivileged_and_leaves_no_zombies(docker_client, trained, small_data):
    endpoint = start_serving(docker_client, trained.opt_ml / "model")
    try:
        server = [p for p in processes(endpoint.container) if "java" in p["COMMAND"] or "mms" in p["COMMAND"]]
        assert server and all(p["USER"] not in ("root", "0") for p in server), server

        # MMS starts a new worker; nothing may be left unreaped.
        endpoint.container.exec_run(["python3", "-c", KILL_WORKER])
        deadline = time.monotonic() + 60
        image = next((small_data / "test" / "004.Dress").glob("*.png"))
        while time.monotonic() < deadline:
            try:  # a request sent while the new worker loads may wait for it, or find it gone again
                if requests.get(f"{endpoint.url}/ping", timeout=5).status_code == 200:
                    if post_image(f"{endpoint.url}/invocations", image).status_code == 200:
                        break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the server did not recover after its workers were killed")
        assert not [p for p in processes(endpoint.container) if p["STAT"].startswith("Z")]
    finally:
        endpoint.container.remove(force=True)


def test_sigterm_stops_the_server_cleanly_within_30_s(docker_client, trained):
    endpoint = start_serving(docker_client, trained.opt_ml / "model")
    try:
        started = time.monotonic()
        endpoint.container.stop(timeout=30)  # SIGTERM, then SIGKILL after 30 s
        elapsed = time.monotonic() - started
        endpoint.container.reload()
        assert endpoint.container.attrs["State"]["ExitCode"] == 0 and elapsed < 25, elapsed
        assert "stopping the model server" in endpoint.container.logs().decode(errors="replace")
    finally:
        endpoint.container.remove(force=True)


def test_serve_is_pid_1_without_tini_and_reaps_orphans(docker_client, trained):
    """SageMaker's docs rule out tini as the entrypoint: `serve` itself is PID 1 and must reap
    the orphans the tree leaves it (here: a process whose parent exits at once)."""
    endpoint = start_serving(docker_client, trained.opt_ml / "model")
    try:
        endpoint.container.reload()
        pid_1 = [p for p in processes(endpoint.container) if p["PID"] == str(
            endpoint.container.attrs["State"]["Pid"])]
        assert pid_1 and "/opt/byoc/bin/serve" in pid_1[0]["COMMAND"] and "tini" not in pid_1[0]["COMMAND"]
        assert endpoint.container.attrs["Config"]["Entrypoint"] in (None, [])
        endpoint.container.exec_run(["sh", "-c", "(sleep 1 &) ; exit 0"])  # the sleep is orphaned to PID 1
        time.sleep(3)
        assert not [p for p in processes(endpoint.container) if p["STAT"].startswith("Z")], processes(endpoint.container)
    finally:
        endpoint.container.remove(force=True)


PROBE = ("import socket, sys\n"
         "def reachable(host, port):\n"
         "    try:\n"
         "        socket.create_connection((host, port), timeout=2).close(); return True\n"
         "    except OSError: return False\n"
         "port, outside = int(sys.argv[1]), socket.gethostbyname(socket.gethostname())\n"
         "print(reachable('127.0.0.1', port), reachable(outside, port), reachable(outside, 8080))\n")


def test_the_management_port_comes_from_the_safe_range_and_listens_on_loopback_only(docker_client, trained):
    endpoint = start_serving(docker_client, trained.opt_ml / "model",
                             environment={"SAGEMAKER_SAFE_PORT_RANGE": "20000-20010"})
    try:
        assert "management on 127.0.0.1:20000" in endpoint.container.logs().decode()
        output = endpoint.container.exec_run(["python3", "-c", PROBE, "20000"]).output.decode().split()
        assert output == ["True", "False", "True"], output  # loopback yes, the container's address no
    finally:
        endpoint.container.remove(force=True)


@pytest.mark.parametrize("name, value", [("SAGEMAKER_BIND_TO_PORT", "99999"),
                                         ("SAGEMAKER_SAFE_PORT_RANGE", "9000"),
                                         ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "0")])
def test_a_bad_port_or_timeout_stops_serve_naming_it(docker_client, trained, name, value):
    container = start_serving(docker_client, trained.opt_ml / "model", environment={name: value},
                              ready=False).container
    try:
        assert container.wait(timeout=60)["StatusCode"] != 0
        assert f"serve: {name}={value!r}" in container.logs().decode()
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("access_log", [False, True])
def test_requests_are_logged_one_line_each_only_when_asked(docker_client, trained, small_data, access_log):
    """BYOC_ACCESS_LOG=true: MMS's access log and its worker thread's timing, a line per request (they
    cost a lone request 0.5-0.8 ms, so they are off by default); the worker's own line stays either way."""
    environment = {"BYOC_ACCESS_LOG": "true"} if access_log else {}
    endpoint = start_serving(docker_client, trained.opt_ml / "model", environment=environment)
    try:
        image = next((small_data / "test" / "004.Dress").glob("*.png"))
        assert post_image(f"{endpoint.url}/invocations", image).status_code == 200
        deadline, logs = time.monotonic() + 10, ""
        while time.monotonic() < deadline and "forward pass:" not in logs:
            time.sleep(0.2)
            logs = endpoint.container.logs().decode(errors="replace")
        assert "forward pass: 1 request(s), 1 image(s)" in logs, logs[-2000:]
        time.sleep(0.5)  # the frontend logs after it answers
        logs = endpoint.container.logs().decode(errors="replace")
        assert ('"POST /invocations HTTP/1.1" 200' in logs) is access_log, logs[-2000:]
        assert ("Backend response time" in logs) is access_log, logs[-2000:]
    finally:
        endpoint.container.remove(force=True)


REQUESTS_BEFORE_COMPILED = 100


@pytest.mark.parametrize("jit", ["", "tiered"], ids=["default", "tiered"])
def test_the_frontend_jvm_compiles_the_request_path_early_with_c1_alone_unless_asked(docker_client, trained,
                                                                                    small_data, jit):
    """C2's compiles of the request path, up to 200 ms each for thousands of requests, compete with
    torch for the cores (BENCHMARKS.md): by default the JVM has no C2 compiler; BYOC_FRONTEND_JIT=tiered.
    And by default C1 compiles the request path within the first requests: at the JVM's usual
    counts it stays interpreted for hundreds (about 1 ms more a request, BENCHMARKS.md). 100 requests:
    C1 multiplies its scaled counts while its queue is long (a busy machine at start-up), and at the
    JVM's usual counts the interpreter does not even ask for a compile before a method's 128th call."""
    environment = {"JAVA_TOOL_OPTIONS": "-XX:+PrintCompilation", **({"BYOC_FRONTEND_JIT": jit} if jit else {})}
    endpoint = start_serving(docker_client, trained.opt_ml / "model", environment=environment)
    try:
        image = next((small_data / "test" / "004.Dress").glob("*.png"))
        for _ in range(REQUESTS_BEFORE_COMPILED):
            assert post_image(f"{endpoint.url}/invocations", image).status_code == 200
        threads = endpoint.container.exec_run(["python3", "-c", JVM_THREADS]).output.decode()
        assert "C1 CompilerThre" in threads, threads
        assert ("C2 CompilerThre" in threads) is (jit == "tiered"), threads
        # The handler of /invocations has run 100 times. PrintCompilation writes a line per method
        # compiled, through a buffer that the JVM flushes when it exits: give the compiler a moment,
        # then stop the server (serve passes SIGTERM on) and read everything it wrote.
        time.sleep(2)
        endpoint.container.stop(timeout=30)
        logs = endpoint.container.logs().decode(errors="replace")
        assert "java.lang.Object::<init>" in logs, logs[-2000:]  # the compile log did come out
        assert ("byoc.mms.Invocations::dispatch" in logs) is (jit != "tiered"), logs[-2000:]
    finally:
        endpoint.container.remove(force=True)
