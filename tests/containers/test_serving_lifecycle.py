"""Readiness, shutdown and processes: /ping means ready, SIGTERM stops cleanly, no root, no zombies."""
import shutil
import time

import pytest
import requests

from support import post_image, start_serving

pytestmark = pytest.mark.docker
# Kill the process that runs the model (a worker's child), as the OOM killer would.
KILL_WORKER = ("import os, psutil\n"
               "workers = [p for p in psutil.process_iter(['cmdline']) if p.pid != os.getpid()\n"
               "           and 'model_service_worker' in ' '.join(p.info['cmdline'] or [])]\n"
               "for p in workers:\n"
               "    if p.ppid() in {w.pid for w in workers}: p.kill()\n")


def processes(container) -> list[dict]:
    top = container.top(ps_args="-eo pid,user,stat,args")
    return [dict(zip(top["Titles"], row)) for row in top["Processes"]]


def test_ping_is_not_healthy_while_the_model_cannot_load(docker_client, trained, tmp_path):
    """MMS's own /ping would answer 200 here: its workers fail to load broken weights again and again."""
    model = tmp_path / "model"
    shutil.copytree(trained.opt_ml / "model", model)
    (model / "model.safetensors").write_bytes(b"\0" * 1000)
    endpoint = start_serving(docker_client, model, ready=False)
    try:
        codes, deadline = set(), time.monotonic() + 25
        while time.monotonic() < deadline:
            try:
                codes.add(requests.get(f"{endpoint.url}/ping", timeout=2).status_code)
            except requests.ConnectionError:
                pass
            time.sleep(0.25)
        assert 503 in codes and 200 not in codes, codes
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
            if requests.get(f"{endpoint.url}/ping", timeout=5).status_code == 200:
                if post_image(f"{endpoint.url}/invocations", image).status_code == 200:
                    break
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
