"""SAGEMAKER_MODEL_SERVER_TIMEOUT, in seconds, enforced: a forward pass that hangs (the image's
test hook BYOC_TEST_STALL_FILE, which no request can trigger) is answered 504 at the timeout,
queued requests with it; the hung process is killed and a new worker loads the model; /ping says
503 until it has; a body that stops arriving is cut off with a 408."""
import socket
import threading
import time

import pytest
import requests

from support import expected_answer, start_serving

pytestmark = pytest.mark.docker
TIMEOUT_S = 3
STALL = "/tmp/byoc-test-stall"


@pytest.fixture(scope="module")
def stalling_endpoint(docker_client, trained):
    endpoint = start_serving(docker_client, trained.opt_ml / "model",
                             environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(TIMEOUT_S),
                                          "BYOC_TEST_STALL_FILE": STALL})
    yield endpoint
    endpoint.container.remove(force=True)


def model_processes(container) -> dict[int, str]:
    """pid -> state of the processes that run the model (the children of MMS's backend server)."""
    top = container.top(ps_args="-eo pid,ppid,stat,args")["Processes"]
    workers = {int(pid): (int(ppid), stat) for pid, ppid, stat, args in top if "model_service_worker" in args}
    return {pid: stat for pid, (ppid, stat) in workers.items() if ppid in workers}


def test_a_hung_forward_pass_is_cut_off_at_the_timeout_and_its_worker_replaced(stalling_endpoint, trained,
                                                                               small_data):
    url, container = stalling_endpoint.url, stalling_endpoint.container
    image = next((small_data / "test" / "002.Trouser").glob("*.png")).read_bytes()
    hung = set(model_processes(container))
    assert hung, "no worker process found"
    container.exec_run(["touch", STALL])
    answers, took = [None, None], [0.0, 0.0]

    def send(i):
        started = time.monotonic()
        answers[i] = requests.post(f"{url}/invocations", data=image, headers={"Content-Type": "image/png"},
                                   timeout=60)
        took[i] = time.monotonic() - started

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]  # one runs, one may queue
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    container.exec_run(["rm", "-f", STALL])
    for answer, seconds in zip(answers, took):
        assert answer.status_code == 504 and answer.json()["status"] == 504, answer.text
        assert f"within {TIMEOUT_S} s" in answer.json()["error"]
        assert TIMEOUT_S <= seconds < TIMEOUT_S + 1.5, took

    # The hung process is killed (its memory freed: gone, or a zombie until MMS reaps it).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(not model_processes(container).get(pid, "Z").startswith("Z")
                                              for pid in hung):
        time.sleep(0.2)
    assert all(model_processes(container).get(pid, "Z").startswith("Z") for pid in hung), model_processes(container)

    # /ping is 503 until a new worker has the model, then 200; the model answers again.
    codes, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline and codes[-1:] != [200]:
        codes.append(requests.get(f"{url}/ping", timeout=2).status_code)
        time.sleep(0.1)
    assert 503 in codes and codes[-1] == 200, codes
    answer = requests.post(f"{url}/invocations", data=image, headers={"Content-Type": "image/png"}, timeout=30)
    assert answer.status_code == 200
    assert answer.json() == expected_answer(trained.opt_ml / "model", image)
    assert set(model_processes(container)).isdisjoint(hung)


def test_a_body_that_stops_arriving_is_cut_off_with_a_408(stalling_endpoint):
    host, port = stalling_endpoint.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_S + 5) as connection:
        connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 1000\r\n\r\n\x89PNG")
        started, answer = time.monotonic(), b""
        while chunk := connection.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b'"status":408' in answer, answer
    assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 1.5
