"""AWS Lambda function: classify an image with the SageMaker endpoint named in ENDPOINT_NAME.

Event (direct invocation, or the JSON body of an API Gateway / function URL request):
    {"url": "https://example.com/shoe.jpg"} or {"image_b64": "<base64 PNG or JPEG>"}, optional "top_k"
Answer: {"statusCode": 200, "headers": {...}, "body": "{\"predictions\": [{\"label\", \"probability\"}, ...]}"};
errors carry a 4xx/5xx status and {"error": "..."}.

Standard library and boto3 (both in Lambda's Python runtime) plus byoc.contract, which names
what the endpoint takes: `make lambda-zip` packages this file with byoc/contract.py.

URLs: http(s) only; every address the host resolves to must be public (no private, loopback,
link-local or metadata addresses: SSRF), the connection goes to the address that was checked,
and redirects are checked the same way. ALLOW_PRIVATE_URLS=1 lifts the address check (tests on
loopback only).
"""
import base64
import binascii
import http.client
import ipaddress
import json
import os
import socket
import ssl
import time
import urllib.parse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from byoc import contract

MAX_IMAGE_BYTES = int(os.environ.get("MAX_IMAGE_BYTES", 5 * 1024 * 1024))  # invoke_endpoint takes up to 6 MB
FETCH_TIMEOUT_S = float(os.environ.get("FETCH_TIMEOUT_S", 5))
INVOKE_TIMEOUT_S = float(os.environ.get("INVOKE_TIMEOUT_S", 30))
MAX_REDIRECTS = 3
MAX_TOP_K = 100  # the endpoint answers at most its number of classes
SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}

_runtime = None


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _private_allowed() -> bool:
    return os.environ.get("ALLOW_PRIVATE_URLS", "") == "1"


def _answer(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _public_address(host: str, port: int) -> str:
    """The first address of host, after checking that every address it resolves to is public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Refused(400, f"cannot resolve host {host!r}") from None
    addresses = [info[4][0] for info in infos]
    if not _private_allowed():
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:127.0.0.1 is 127.0.0.1
                ip = ip.ipv4_mapped
            if not ip.is_global or ip.is_multicast:
                raise Refused(403, f"host {host!r} resolves to a non-public address ({ip}); refused")
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the checked address, not to whatever the name resolves to next (DNS rebinding)."""
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch(url: str) -> bytes:
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(400, "url must be an http:// or https:// URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = _public_address(parts.hostname, port)
        connection = (_PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP)(
            parts.hostname, port, address, FETCH_TIMEOUT_S)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path, headers={"User-Agent": "byoc-lambda", "Accept": "image/*"})
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urllib.parse.urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise Refused(400, f"fetching the url answered HTTP {response.status}")
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > MAX_IMAGE_BYTES:
                raise Refused(413, f"the image is larger than {MAX_IMAGE_BYTES} bytes")
            body = bytearray()
            while chunk := response.read(64 * 1024):
                body += chunk
                if len(body) > MAX_IMAGE_BYTES:
                    raise Refused(413, f"the image is larger than {MAX_IMAGE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise Refused(504, f"fetching the url took longer than {FETCH_TIMEOUT_S:g} s")
            return bytes(body)
        except (TimeoutError, socket.timeout):
            raise Refused(504, f"fetching the url took longer than {FETCH_TIMEOUT_S:g} s") from None
        except (OSError, http.client.HTTPException) as error:
            raise Refused(400, f"fetching the url failed: {error}") from None
        finally:
            connection.close()
    raise Refused(400, f"more than {MAX_REDIRECTS} redirects")


def content_type(image: bytes) -> str:
    for signature, kind in SIGNATURES.items():
        if image.startswith(signature):
            return kind
    raise Refused(415, "not a PNG or JPEG image")


def _request(event: dict) -> dict:
    if isinstance(event, dict) and "body" in event and isinstance(event["body"], str):  # API Gateway, function URL
        body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"]
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the request body is not JSON") from None
    if not isinstance(event, dict) or ("url" in event) == ("image_b64" in event):
        raise Refused(400, 'send exactly one of {"url": ...} or {"image_b64": ...}')
    return event


def _image(request: dict) -> bytes:
    if "url" in request:
        if not isinstance(request["url"], str):
            raise Refused(400, "url must be a string")
        return fetch(request["url"])
    data = request["image_b64"]
    if not isinstance(data, str) or len(data) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise Refused(413 if isinstance(data, str) else 400, f"image_b64 must be a string of at most "
                                                             f"{MAX_IMAGE_BYTES} bytes once decoded")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(400, "image_b64 is not valid base64") from None


def _top_k(request: dict) -> int:
    k = request.get("top_k", contract.DEFAULT_TOP_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
        raise Refused(400, f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return k


def runtime():
    global _runtime
    if _runtime is None:  # one client per Lambda container, reused across invocations
        _runtime = boto3.client("sagemaker-runtime", config=Config(
            connect_timeout=5, read_timeout=INVOKE_TIMEOUT_S, retries={"max_attempts": 2, "mode": "standard"}))
    return _runtime


def handler(event, context=None) -> dict:
    endpoint = os.environ.get("ENDPOINT_NAME")
    if not endpoint:
        return _answer(500, {"error": "the function has no ENDPOINT_NAME configured"})
    try:
        request = _request(event)
        k = _top_k(request)
        image = _image(request)
        if not image:
            raise Refused(400, "the image is empty")
        kind = content_type(image)
    except Refused as refused:
        return _answer(refused.status, {"error": str(refused)})
    try:
        response = runtime().invoke_endpoint(EndpointName=endpoint, ContentType=kind, Body=image,
                                             Accept=contract.RESPONSE_TYPE,
                                             CustomAttributes=contract.top_k_attribute(k))
    except ClientError as error:
        body = error.response
        if body.get("Error", {}).get("Code") == "ModelError":  # the container answered 4xx/5xx
            status = body.get("OriginalStatusCode", 502)
            message = body.get("OriginalMessage") or body["Error"].get("Message", "")
            try:
                message = json.loads(message).get("error", message)
            except (ValueError, AttributeError):
                pass
            return _answer(status if 400 <= status < 500 else 502, {"error": f"the model refused the image: {message}"})
        print(f"invoke_endpoint failed: {error}")  # CloudWatch; the caller gets no internals
        return _answer(502, {"error": "the endpoint could not be called"})
    except (ReadTimeoutError, ConnectTimeoutError):
        return _answer(504, {"error": f"the endpoint did not answer within {INVOKE_TIMEOUT_S:g} s"})
    except BotoCoreError as error:  # could not connect, no credentials, ...
        print(f"invoke_endpoint failed: {error}")
        return _answer(502, {"error": "the endpoint could not be called"})
    predictions = json.loads(response["Body"].read())["predictions"]
    return _answer(200, {"predictions": predictions[:k], "endpoint": endpoint})
