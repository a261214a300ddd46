"""The Lambda handler's input checks: events, SSRF refusals (every embedded-IPv4 form), malformed
URLs, one deadline for the whole fetch, generic fetch failures, size limits by endpoint type,
packaging.

Everything here is refused before the endpoint is called (the end-to-end run with the
serving container is tests/containers/test_lambda_endpoint.py); ENDPOINT_NAME names an
endpoint that cannot be reached, so a check that let a request through would fail loudly.
Servers that misbehave (drip bytes, never answer, redirect to nonsense) run on loopback.
"""
import base64
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from byoc import contract
from byoc_cloud import endpoint_lambda, lambda_urls

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture(autouse=True)
def env(point_lambda):
    point_lambda("unreachable", "http://127.0.0.1:9", allow_private_urls=False)  # nothing listens there


def call(event):
    answer = endpoint_lambda.handler(event, None)
    return answer["statusCode"], json.loads(answer["body"])["error"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.png", "http://localhost:8080/x.png", "http://10.1.2.3/x.png", "http://192.168.0.1/x.png",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/x.png", "http://[::ffff:127.0.0.1]/x.png",
    "http://0.0.0.0/x.png", "http://100.64.0.1/x.png",
])
def test_private_and_loopback_addresses_are_refused(url):
    status, error = call({"url": url})
    assert status == 403 and "non-public address" in error


# 10.0.0.1, 127.0.0.1 and 169.254.169.254 inside IPv6 addresses whose own prefix looks public.
@pytest.mark.parametrize("address", [
    "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix (RFC 6052)
    "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215): refused whatever it embeds
    "::a00:1", "::7f00:1",  # IPv4-compatible
    "::ffff:a00:1", "::ffff:a9fe:a9fe",  # IPv4-mapped
    "::ffff:0:a00:1",  # IPv4-translated (SIIT)
    "2002:a00:1::", "2002:7f00:1:1::1",  # 6to4
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "2600::5efe:a00:1", "2600:1f18::200:5efe:a9fe:a9fe",  # ISATAP under a global prefix
])
def test_ipv6_addresses_that_embed_private_ipv4_are_refused(address):
    status, error = call({"url": f"http://[{address}]/x.png"})
    assert status == 403 and "non-public address" in error, error


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "2600::5efe:808:808",
                                     "8.8.8.8", "2606:4700::1111"])
def test_addresses_that_embed_public_ipv4_pass_the_check(address):
    assert lambda_urls.refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("url", [
    "http://h:99999/x.png", "http://[::1/x.png", "http://h:abc/", "http://h:0/", "http://[::1]:65536/",
    "http://exa mple.com/", "http://example.com/\r\nX-Injected: 1", "http://example.com/" + "a" * 2048,
    "http://[v1.fe]/", "http://[fe80::1%25eth0/",
])
def test_malformed_urls_are_a_400(url):
    status, error = call({"url": url})
    assert status == 400 and error.startswith("url "), error


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://x", "http:///x.png",
                                 "//example.com/x.png"])
def test_only_http_urls(url):
    assert call({"url": url}) == (400, "url must be an http:// or https:// URL with a host")


@pytest.mark.parametrize("event", [{}, {"url": "http://a", "image_b64": "AA=="}, [], {"body": "not json"},
                                   {"image_b64": 42}, {"url": ["x"]}])
def test_malformed_events(event):
    assert call(event)[0] == 400


def test_base64_checks():
    assert call({"image_b64": "%%%"}) == (400, "image_b64 is not base64 (A-Z a-z 0-9 + / or the URL-safe - _, "
                                               "optionally as a data: URL)")
    assert call({"image_b64": base64.b64encode(b"hello").decode()}) == (415, "not a PNG or JPEG image")
    assert call({"image_b64": ""})[0] == 400
    big = base64.b64encode(PNG + b"\0" * endpoint_lambda.max_image_bytes()).decode()
    assert call({"image_b64": big})[0] == 413
    assert call({"image_b64": base64.b64encode(PNG).decode(), "top_k": 0})[0] == 400


def test_an_unreachable_endpoint_is_a_502():
    """The control for the tests above: a valid image does go on to the (unreachable) endpoint."""
    assert call({"image_b64": base64.b64encode(PNG).decode()})[0] in (502, 504)


def test_missing_configuration(monkeypatch):
    monkeypatch.delenv("ENDPOINT_NAME")
    assert call({"image_b64": base64.b64encode(PNG).decode()})[0] == 500


@pytest.fixture
def web(monkeypatch):
    """A loopback server (ALLOW_PRIVATE_URLS=1): big, dripping and redirecting answers."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/big/"):  # no Content-Length: the limit must hold while reading
                self.send_response(200)
                self.end_headers()
                size = int(self.path.split("/")[2])
                self.wfile.write(PNG[:8] + b"\0" * (size - 8))
            elif self.path == "/drip-body":  # headers at once, then a byte every 0.2 s
                self.send_response(200)
                self.end_headers()
                drip(self.wfile, PNG)
            elif self.path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.end_headers()
            elif self.path.startswith("/to/"):
                self.send_response(302)
                self.send_header("Location", self.path[len("/to/"):])
                self.end_headers()
    monkeypatch.setenv("ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("FETCH_TIMEOUT_S", "1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def drip(out, data: bytes, every: float = 0.2) -> None:
    try:
        for _ in range(100):
            for byte in data:
                out.write(bytes([byte]))
                out.flush()
                time.sleep(every)
    except OSError:  # the Lambda hung up, as it should
        pass


@pytest.fixture
def raw_server(monkeypatch):
    """raw_server(behaviour): a loopback TCP server that does behaviour(connection) with each client."""
    monkeypatch.setenv("ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("FETCH_TIMEOUT_S", "1")
    listeners = []

    def start(behaviour, accept=True):
        listener = socket.create_server(("127.0.0.1", 0), backlog=1)
        listeners.append(listener)

        def serve():
            while accept:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=behaviour, args=(connection,), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        return listener.getsockname()[1]
    yield start
    for listener in listeners:
        listener.close()


def dripping(data: bytes):
    def behaviour(connection) -> None:
        with connection:
            drip(connection.makefile("wb", buffering=0), data)
    return behaviour


drip_headers = dripping(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Pad: " + b"a" * 1000)
drip_tls = dripping(b"\x16\x03\x03\x3f\xff" + b"\0" * 1000)  # a TLS handshake record of 16 KiB, slowly


def silent(connection) -> None:
    with connection:
        time.sleep(5)


def timed(event) -> tuple[float, tuple]:
    start = time.monotonic()
    answer = call(event)
    return time.monotonic() - start, answer


GENERIC = (502, "could not fetch an image from the url within 1 s")


def test_one_deadline_bounds_the_whole_fetch(web, raw_server):
    """A byte every 0.2 s resets any per-read timeout; the fetch still ends at FETCH_TIMEOUT_S=1."""
    headers = raw_server(drip_headers)
    tls = raw_server(drip_tls)  # https:// to it: the handshake waits for the whole record
    for url in (f"{web}/drip-body", f"http://127.0.0.1:{headers}/x.png", f"https://127.0.0.1:{tls}/x.png"):
        elapsed, answer = timed({"url": url})
        assert answer == GENERIC and elapsed < 1.8, (url, elapsed, answer)


def test_fetch_failures_get_one_generic_answer_and_details_only_in_the_log(web, raw_server, capsys):
    silent_port = raw_server(silent)
    answers = {}
    # Bound but not listening: the kernel refuses connections, and no other socket (a server
    # started later, this test's own included) can be handed the port while it is held.
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        refused_port = refusing.getsockname()[1]
        for name, url in {"refused": f"http://127.0.0.1:{refused_port}/x.png", "silent": f"http://127.0.0.1:{silent_port}/",
                          "no such host": "http://no-such-host.invalid/x.png",
                          "not http": f"https://127.0.0.1:{web.rsplit(':', 1)[1]}/"}.items():
            answers[name] = call({"url": url})
    assert set(answers.values()) == {GENERIC}, answers  # nothing tells refused from silent from unknown
    log = capsys.readouterr().out
    assert "Connection refused" in log and "no-such-host.invalid" in log


def test_sizes_and_redirects(web):
    assert call({"url": f"{web}/big/{endpoint_lambda.max_image_bytes() + 1}"})[0] == 413
    assert call({"url": f"{web}/loop"}) == (400, "more than 3 redirects")
    for target in ("http://h:99999/", "http://[::1/", "ftp://example.com/x.png"):
        status, error = call({"url": f"{web}/to/{target}"})
        assert status == 400 and error.startswith("the url redirects to an invalid target: url "), error


@pytest.mark.parametrize("kind", contract.ENDPOINT_TYPES)
def test_the_image_limit_follows_the_endpoint_type(web, monkeypatch, kind):
    monkeypatch.setenv("ENDPOINT_TYPE", kind)
    limit = contract.MAX_INVOKE_BYTES[kind]
    assert endpoint_lambda.max_image_bytes() == limit
    assert call({"url": f"{web}/big/{limit + 1}"}) == (413, f"the image is larger than {limit} bytes")
    too_big = base64.b64encode(PNG + b"\0" * (limit + 1 - len(PNG))).decode()
    assert call({"image_b64": too_big})[0] == 413
    # at the limit the image goes on to the (unreachable) endpoint
    assert call({"url": f"{web}/big/{limit}"})[0] in (502, 504)
    monkeypatch.setenv("MAX_IMAGE_BYTES", "1000")  # can lower the limit, never raise it
    assert endpoint_lambda.max_image_bytes() == 1000
    monkeypatch.setenv("MAX_IMAGE_BYTES", str(limit * 2))
    assert endpoint_lambda.max_image_bytes() == limit


def test_a_misconfigured_endpoint_type_is_a_500(monkeypatch):
    monkeypatch.setenv("ENDPOINT_TYPE", "asynchronous")
    status, error = call({"image_b64": base64.b64encode(PNG).decode()})
    assert status == 500 and "ENDPOINT_TYPE" in error


def test_lambda_zip_holds_a_working_handler(tmp_path):
    target = tmp_path / "endpoint-lambda.zip"
    subprocess.run(["make", "-s", "lambda-zip", f"LAMBDA_ZIP={target}"], cwd=ROOT, check=True)
    files = sorted(n for n in zipfile.ZipFile(target).namelist() if not n.endswith("/"))
    assert files == ["byoc/__init__.py", "byoc/contract.py", "byoc_cloud/__init__.py", "byoc_cloud/lambda_events.py",
                     "byoc_cloud/lambda_urls.py", "endpoint_lambda.py"]
    # Lambda imports the handler from the unpacked zip: only it, the standard library and boto3 are there.
    result = subprocess.run([sys.executable, "-c", "import sys, json; sys.path.insert(0, sys.argv[1]); "
                             "import endpoint_lambda; print(json.dumps(endpoint_lambda.handler({}))); "
                             "print(endpoint_lambda.contract.__file__)", str(target)],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    answer, contract_file = result.stdout.splitlines()
    assert json.loads(answer)["statusCode"] == 400  # {} is not a request
    assert contract_file.startswith(str(target))  # the zip's own contract, not the dev environment's
