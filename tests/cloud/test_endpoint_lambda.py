"""The Lambda handler's input checks: events, SSRF refusals, size and time limits, packaging.

Everything here is refused before the endpoint is called (the end-to-end run with the
serving container is tests/containers/test_lambda_endpoint.py); ENDPOINT_NAME names an
endpoint that cannot be reached, so a check that let a request through would fail loudly.
"""
import base64
import json
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from byoc_cloud import endpoint_lambda

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


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://x", "http:///x.png",
                                 "//example.com/x.png"])
def test_only_http_urls(url):
    assert call({"url": url}) == (400, "url must be an http:// or https:// URL with a host")


@pytest.mark.parametrize("event", [{}, {"url": "http://a", "image_b64": "AA=="}, [], {"body": "not json"},
                                   {"image_b64": 42}, {"url": ["x"]}])
def test_malformed_events(event):
    assert call(event)[0] == 400


def test_base64_checks():
    assert call({"image_b64": "%%%"}) == (400, "image_b64 is not valid base64")
    assert call({"image_b64": base64.b64encode(b"hello").decode()}) == (415, "not a PNG or JPEG image")
    assert call({"image_b64": ""})[0] == 400
    big = base64.b64encode(PNG + b"\0" * endpoint_lambda.MAX_IMAGE_BYTES).decode()
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
    """A loopback server (ALLOW_PRIVATE_URLS=1): big, slow and redirecting answers."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/big":  # no Content-Length: the limit must hold while reading
                self.send_response(200)
                self.end_headers()
                for _ in range(endpoint_lambda.MAX_IMAGE_BYTES // 65536 + 2):
                    self.wfile.write(PNG[:8] + b"\0" * 65528)
            elif self.path == "/slow":
                self.send_response(200)
                self.end_headers()
                time.sleep(3)
            elif self.path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.end_headers()
    monkeypatch.setenv("ALLOW_PRIVATE_URLS", "1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_limits(web, monkeypatch):
    monkeypatch.setattr(endpoint_lambda, "FETCH_TIMEOUT_S", 1)
    assert call({"url": f"{web}/big"})[0] == 413
    assert call({"url": f"{web}/slow"})[0] == 504
    assert call({"url": f"{web}/loop"}) == (400, "more than 3 redirects")


def test_lambda_zip_holds_a_working_handler(tmp_path):
    target = tmp_path / "endpoint-lambda.zip"
    subprocess.run(["make", "-s", "lambda-zip", f"LAMBDA_ZIP={target}"], cwd=ROOT, check=True)
    files = sorted(n for n in zipfile.ZipFile(target).namelist() if not n.endswith("/"))
    assert files == ["byoc/__init__.py", "byoc/contract.py", "endpoint_lambda.py"]
    # Lambda imports the handler from the unpacked zip: only it, the standard library and boto3 are there.
    result = subprocess.run([sys.executable, "-c", "import sys, json; sys.path.insert(0, sys.argv[1]); "
                             "import endpoint_lambda; print(json.dumps(endpoint_lambda.handler({}))); "
                             "print(endpoint_lambda.contract.__file__)", str(target)],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    answer, contract_file = result.stdout.splitlines()
    assert json.loads(answer)["statusCode"] == 400  # {} is not a request
    assert contract_file.startswith(str(target))  # the zip's own contract, not the dev environment's
