"""The hostile-input corpus (tests/hostile.py) and HTTP-level abuse against the real server: each
request gets its status and a JSON body from our code (never a 5xx, never Java text), and
afterwards /ping and a good request succeed and no worker has been restarted."""
import socket
import threading
import time

import pytest
import requests

from hostile import MIB, corpus, good_png

pytestmark = pytest.mark.docker
CASES = {case.name: case for case in corpus()}
# MMS's worker lifecycle in its log: any of these means a worker was lost or restarted.
WORKER_TROUBLE = ("Worker disconnected", "Retry worker", "Unknown exception", "Backend worker process died",
                  "Load model failed", "Worker died")


def worker_trouble(container) -> list[str]:
    logs = container.logs().decode(errors="replace")
    return [line for line in logs.splitlines() if any(sign in line for sign in WORKER_TROUBLE)]


def assert_our_json(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    if status >= 400:
        assert body["status"] == status and body["error"], body
    assert "Traceback" not in response.text and "Exception" not in response.text and "java" not in response.text


@pytest.mark.parametrize("name", CASES)
def test_each_hostile_request_gets_its_status_as_our_json(endpoint, name):
    case = CASES[name]
    response = requests.request(case.method, endpoint.url + case.path, data=case.body, headers=case.headers,
                                timeout=60)
    assert_our_json(response, case.status)


def raw_exchange(url: str, request: bytes, read_for: float = 10) -> bytes:
    """Send raw bytes, return what the server answered (until it closes or `read_for` seconds pass)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_for) as connection:
        connection.sendall(request)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.count(b"}") >= 1:
                    break
        except TimeoutError:
            pass
    return answer


def status_and_json(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:300]
    return int(head.split()[1]), body


RAW = {
    "not HTTP at all": (b"GARBAGE\r\n\r\n", 400),
    "a 10 kB request line": (b"POST /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "an HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "a header injected after a line break": (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"X-Amzn-SageMaker-Custom-Attributes: top_k=2\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 4\r\n\r\nabcd", 415),
    "Latin-1 bytes in a header": (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                  b"X-Amzn-SageMaker-Custom-Attributes: top_k=\xe9\xff\r\nContent-Length: 4\r\n\r\n"
                                  b"abcd", 400),
    "Expect: 100-continue for 7 MiB": (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                       b"Expect: 100-continue\r\nContent-Length: 7340032\r\n\r\n", 413),
    "Content-Length of 7 MiB, body never sent": (b"POST /invocations HTTP/1.1\r\nHost: x\r\n"
                                                 b"Content-Type: image/png\r\nContent-Length: 7340032\r\n\r\n", 413),
    # requests would re-escape these paths; Netty's decoder throws on them (a 500 until the route caught it)
    "a path with a bad percent escape": (b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "a path of a lone percent sign": (b"POST /% HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400),
    "Expect: 999-foo": (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 999-foo\r\n"
                        b"Content-Length: 4\r\n\r\n", 417),
    "a chunk size of 2^31": (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n80000000\r\nabc\r\n0\r\n\r\n", 400),
    "a chunk size of 18 hex digits": (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 18 + b"\r\nabc\r\n0\r\n\r\n", 400),
    "chunked past the limit": (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n"
                               + (b"100000\r\n" + b"\0" * 0x100000 + b"\r\n") * 7 + b"0\r\n\r\n", 413),
}


@pytest.mark.parametrize("name", RAW)
def test_malformed_and_oversized_http_gets_a_json_4xx(endpoint, name):
    request, status = RAW[name]
    got, body = status_and_json(raw_exchange(endpoint.url, request))
    assert got == status, body[:300]
    assert b"Exception" not in body and b"java" not in body


def test_a_chunked_body_is_read_whole(endpoint):
    def chunks():
        data = good_png()
        for start in range(0, len(data), 100):
            yield data[start:start + 100]

    response = requests.post(f"{endpoint.url}/invocations", data=chunks(), headers={"Content-Type": "image/png"},
                             timeout=30)
    assert_our_json(response, 200)


def test_slow_partial_bodies_do_not_hold_up_other_clients(endpoint):
    """Slowloris on loopback, bounded: eight connections send headers and part of a body, then stall."""
    host, port = endpoint.url.removeprefix("http://").split(":")
    stalled = []
    try:
        for _ in range(8):
            connection = socket.create_connection((host, int(port)), timeout=10)
            connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                               b"Content-Length: 100000\r\n\r\n" + good_png()[:50])
            stalled.append(connection)
        started = time.monotonic()
        response = requests.post(f"{endpoint.url}/invocations", data=good_png(),
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert_our_json(response, 200)
        assert time.monotonic() - started < 5
    finally:
        for connection in stalled:
            connection.close()


def test_many_concurrent_large_bodies_are_all_answered(endpoint):
    """Sixteen clients at once, each sending nearly the 6 MiB limit of junk declared as PNG."""
    junk = b"\x89PNG\r\n\x1a\n" + bytes(6 * MIB - 100)
    answers = [None] * 16
    start = threading.Barrier(16)

    def send(i):
        start.wait()
        answers[i] = requests.post(f"{endpoint.url}/invocations", data=junk, headers={"Content-Type": "image/png"},
                                   timeout=120)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for answer in answers:
        assert_our_json(answer, 400)


def test_after_the_corpus_the_server_answers_and_no_worker_was_restarted(endpoint):
    for case in corpus():  # all of it once more, back to back
        requests.request(case.method, endpoint.url + case.path, data=case.body, headers=case.headers, timeout=60)
    assert requests.get(f"{endpoint.url}/ping", timeout=5).status_code == 200
    response = requests.post(f"{endpoint.url}/invocations", data=good_png(), headers={"Content-Type": "image/png"},
                             timeout=30)
    assert_our_json(response, 200)
    assert not worker_trouble(endpoint.container)
    logs = endpoint.container.logs().decode(errors="replace")
    assert logs.count("model loaded on") == 1 and "Traceback" not in logs
