"""AWS Lambda function: classify an image with the SageMaker endpoint named in ENDPOINT_NAME.

Requests, from every source AWS delivers them (the tests drive each documented event shape):
- direct invocation (aws lambda invoke, the console's test event): the event is the request,
  {"url": "https://example.com/shoe.jpg"} or {"image_b64": "<base64 PNG or JPEG>"}, optional "top_k";
- HTTP, from a function URL or API Gateway HTTP API (payload 2.0), API Gateway REST or HTTP API 1.0,
  or an ALB target: POST with that JSON object as the body (any Content-Type but an image's), or the
  PNG or JPEG itself as the body (image/png, image/jpeg, application/octet-stream, or bytes that are
  plainly one; the source base64-encodes it). `?top_k=3` in the query string, or "top_k" in the JSON,
  not both. OPTIONS answers 204 with `Allow: OPTIONS, POST` (CORS is the function URL's or the API's
  own setting); any other method, GET included, is a 405 with that Allow header.
Anything else is a 400 that says what to send: a field or query parameter the function does not know
(a typo such as "topk" is not silently ignored), a body that is not a JSON object, a body marked
base64 that is not, an image that a REST API without binary media types passed as text (415).

Answers: {"statusCode", "headers", "body", "isBase64Encoded": false}, the body JSON,
{"predictions": [{"label", "probability"}, ...], "endpoint": ...} or {"error": "..."}. That is what
function URLs and API Gateway take (a REST API refuses any other key with a 502); an ALB's answer also
carries statusDescription ("200 OK"), and multiValueHeaders instead of headers when its target group
sends multi-value headers.

The endpoint's answers: the container's 4xx about the image (400, 413, 415, 422) passes through with its
reason; a throttled endpoint is a 429, a model not ready or busy or SageMaker unavailable a 503, a
timeout a 504; anything else (no such endpoint, not in service, no permission, the container's 5xx,
SageMaker's internal failures, a 200 that is not the kit's predictions) a 502 whose details go to
the log only. One attempt per request: INVOKE_TIMEOUT_S bounds it.

Standard library and boto3 (both in Lambda's Python runtime) plus byoc.contract, which names
what the endpoint takes: `make lambda-zip` packages this file with byoc/contract.py.

Environment: ENDPOINT_NAME; ENDPOINT_TYPE (realtime or serverless: the largest image the endpoint
takes, contract.MAX_INVOKE_BYTES); optional MAX_IMAGE_BYTES (lower only), FETCH_TIMEOUT_S (5),
INVOKE_TIMEOUT_S (30). `byoc-cloud lambda deploy` sets them.

URLs: http(s) only, parsed strictly (a bad port, bracket or character is a 400, in a redirect
target too). Every address the host resolves to must be public: no private, loopback,
link-local or metadata address, nor one that embeds such an IPv4 address (IPv4-mapped and
-translated, IPv4-compatible, NAT64 64:ff9b::/96, 6to4, Teredo, ISATAP; local-use NAT64
64:ff9b:1::/48 is refused outright). The connection goes to the address that was checked, and
redirects are checked the same way. One deadline, FETCH_TIMEOUT_S, bounds the whole fetch (DNS,
connect, TLS, headers, body, redirects): a server that drips a byte at a time cannot hold the
invocation. A fetch that fails gets one generic answer; its cause goes to the log only, so the
function is no port scanner. ALLOW_PRIVATE_URLS=1 lifts the address check (tests on loopback only).
"""
import base64
import binascii
import concurrent.futures
import http.client
import io
import ipaddress
import json
import os
import select
import socket
import ssl
import time
import urllib.parse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from byoc import contract

DEFAULT_INVOKE_TIMEOUT_S = 30.0
DEFAULT_FETCH_TIMEOUT_S = 5.0
MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2048
MAX_TOP_K = 100  # the endpoint answers at most its number of classes
SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix: the low 32 bits are IPv4
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local use: IPv4 at an operator's offset
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d (deprecated)
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (SIIT)
ISATAP = (0x00005EFE, 0x02005EFE)  # interface identifier ...:0:5efe:a.b.c.d or ...:200:5efe:a.b.c.d
ALLOWED_METHODS = ("OPTIONS", "POST")
JSON_FIELDS = {"url", "image_b64", "top_k"}
QUERY_FIELDS = {"top_k"}
USAGE = ('POST {"url": "https://..."} or {"image_b64": "..."} as JSON (optional "top_k"), or the PNG or JPEG '
         'itself with its Content-Type (optional ?top_k=)')
IMAGE_REFUSALS = (400, 413, 415, 422)  # a container's 4xx about the image; others are its own fault
MAX_REASON = 300
# sagemaker-runtime's errors that mean "not now" (its service model: ModelNotReadyException 429,
# ServiceUnavailable 503; ThrottlingException is common to AWS APIs). The rest are a 502.
TRY_AGAIN = {"ThrottlingException": (429, "the endpoint is receiving too many requests; try again shortly"),
             "ModelNotReadyException": (503, "the model is not ready yet; try again shortly"),
             "ServiceUnavailable": (503, "SageMaker is unavailable; try again shortly")}

_runtime = None
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4)  # getaddrinfo has no timeout of its own


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class FetchFailed(Exception):
    """The url could not be fetched: the caller hears one generic answer, the log the cause."""


def _private_allowed() -> bool:
    return os.environ.get("ALLOW_PRIVATE_URLS", "") == "1"


def _answer(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def max_image_bytes() -> int:
    """The endpoint type's limit (ENDPOINT_TYPE), or MAX_IMAGE_BYTES if that is lower."""
    kind = os.environ.get("ENDPOINT_TYPE", "realtime")
    if kind not in contract.MAX_INVOKE_BYTES:
        raise Refused(500, f"the function's ENDPOINT_TYPE {kind!r} is not one of {', '.join(contract.ENDPOINT_TYPES)}")
    limit = contract.MAX_INVOKE_BYTES[kind]
    override = os.environ.get("MAX_IMAGE_BYTES", "")
    return min(limit, int(override)) if override.isdigit() and int(override) > 0 else limit


def _seconds(variable: str, default: float) -> float:
    try:
        return float(os.environ.get(variable, default))
    except ValueError:
        return default


def fetch_timeout() -> float:
    return _seconds("FETCH_TIMEOUT_S", DEFAULT_FETCH_TIMEOUT_S)


def invoke_timeout() -> float:
    return _seconds("INVOKE_TIMEOUT_S", DEFAULT_INVOKE_TIMEOUT_S)


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the fetch deadline passed")
        return left


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, by every scheme that routes to them."""
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4] + list(ip.teredo or ())
    if ip in NAT64 or ip in IPV4_COMPATIBLE or ip in IPV4_TRANSLATED or (int(ip) >> 32) & 0xFFFFFFFF in ISATAP:
        found.append(low)
    return found


def _public(ip) -> bool:
    return ip.is_global and not ip.is_multicast


def refusal(ip) -> str | None:
    """Why the function must not connect to ip ("" when it is plainly non-public), or None."""
    if ip.version == 6 and ip in NAT64_LOCAL:
        return "a local-use NAT64 address"
    for inner in (embedded_ipv4(ip) if ip.version == 6 else []):
        if not _public(inner):
            return f"it embeds {inner}"
    return None if _public(ip) else ""


def _resolve(host: str, port: int, deadline: Deadline) -> list[str]:
    """Every address of host, each checked. The 403 shows the address only when the caller wrote
    it: for a name it would tell what an internal name resolves to."""
    try:
        infos = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(
            timeout=deadline.remaining())
    except concurrent.futures.TimeoutError:
        raise FetchFailed(f"resolving {host!r} took past the deadline") from None
    except (socket.gaierror, UnicodeError) as error:
        raise FetchFailed(f"resolving {host!r}: {error}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in [] if _private_allowed() else addresses:
        why = refusal(ipaddress.ip_address(address.split("%")[0]))
        if why is not None:
            detail = f" ({address}{', ' + why if why else ''})" if _is_literal(host) else ""
            raise Refused(403, f"host {host!r} resolves to a non-public address{detail}; refused")
    return addresses


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class _DeadlineReader(io.RawIOBase):
    """Socket reads that all together end at the deadline: a socket timeout alone starts over with
    every byte that arrives, so a server dripping one byte a second would never trip it."""

    def __init__(self, sock, deadline: Deadline):
        super().__init__()
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.sock.settimeout(self.deadline.remaining())
        return self.sock.recv_into(buffer)


class _DeadlineSocket:
    """What http.client uses of its socket (sendall, makefile, close), under the deadline."""

    def __init__(self, sock, deadline: Deadline):
        self.sock, self.deadline = sock, deadline

    def sendall(self, data) -> None:
        self.sock.settimeout(self.deadline.remaining())
        self.sock.sendall(data)

    def makefile(self, *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self.sock, self.deadline))

    def close(self) -> None:
        """http.client closes the connection as soon as it has a response it reads to the end of the
        stream (no Content-Length); the socket itself closes with _Pinned.release, after the read."""


def _tls(sock, host: str, deadline: Deadline) -> ssl.SSLSocket:
    """The TLS handshake, non-blocking, so that it too ends at the deadline."""
    tls = ssl.create_default_context().wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            return tls
        except ssl.SSLWantReadError:
            select.select([tls], [], [], deadline.remaining())
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], deadline.remaining())


class _Pinned(http.client.HTTPConnection):
    """Connects to the checked addresses, not to whatever the name resolves to next (DNS rebinding)."""

    def __init__(self, scheme: str, host: str, port: int, addresses: list[str], deadline: Deadline):
        super().__init__(host, port)
        self.scheme, self.addresses, self.deadline = scheme, addresses, deadline

    def connect(self) -> None:
        errors = []
        for address in self.addresses:
            try:
                sock = socket.create_connection((address, self.port), timeout=self.deadline.remaining())
                break
            except OSError as error:
                errors.append(f"{address}: {error}")
        else:
            raise OSError("; ".join(errors))
        if self.scheme == "https":
            sock = _tls(sock, self.host, self.deadline)
        self.raw = sock
        self.sock = _DeadlineSocket(sock, self.deadline)

    def release(self) -> None:
        self.close()
        if getattr(self, "raw", None) is not None:
            self.raw.close()


def parse_url(url) -> urllib.parse.SplitResult:
    """An http(s) URL with a host and a valid port, or a 400 saying what is wrong."""
    if not isinstance(url, str):
        raise Refused(400, "url must be a string")
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise Refused(400, f"url must be at most {MAX_URL_LENGTH} characters, without spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:  # "Invalid IPv6 URL", "Port out of range 0-65535", a port that is no number
        raise Refused(400, f"url is not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(400, "url must be an http:// or https:// URL with a host")
    if port == 0:
        raise Refused(400, "url is not a valid URL: port 0")
    if "[" in parts.netloc and not _is_literal(parts.hostname.split("%")[0]):
        raise Refused(400, f"url is not a valid URL: [{parts.hostname}] is not an IPv6 address")
    return parts._replace(netloc=parts.netloc.rpartition("@")[2])  # userinfo is never sent


def _get(parts, deadline: Deadline, limit: int):
    """One request: (status, Location or None, body)."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    connection = _Pinned(parts.scheme, parts.hostname, port, _resolve(parts.hostname, port, deadline), deadline)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"User-Agent": "byoc-lambda", "Accept": "image/*"})
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            return response.status, None, b""
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise Refused(413, f"the image is larger than {limit} bytes")
        body = bytearray()
        while chunk := response.read(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise Refused(413, f"the image is larger than {limit} bytes")
        return 200, None, bytes(body)
    finally:
        connection.release()


def fetch(url: str, limit: int, timeout: float) -> bytes:
    """The image at url (following up to MAX_REDIRECTS redirects), all within timeout seconds."""
    deadline = Deadline(timeout)
    parts = parse_url(url)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            status, location, body = _get(parts, deadline, limit)
        except (FetchFailed, OSError, http.client.HTTPException, ssl.SSLError, ValueError) as error:
            print(f"fetching {parts.scheme}://{parts.netloc} failed: {type(error).__name__}: {error}")  # the log only
            raise Refused(502, f"could not fetch an image from the url within {timeout:g} s") from None
        if location is None:
            if status != 200:
                raise Refused(400, f"fetching the url answered HTTP {status}")
            return body
        try:
            parts = parse_url(urllib.parse.urljoin(parts.geturl(), location))
        except ValueError as error:  # urljoin parses the target too
            raise Refused(400, f"the url redirects to an invalid target: url is not a valid URL: {error}") from None
        except Refused as refused:
            raise Refused(400, f"the url redirects to an invalid target: {refused}") from None
    raise Refused(400, f"more than {MAX_REDIRECTS} redirects")


def signature_type(image: bytes) -> str | None:
    """image/png or image/jpeg by the file's first bytes, or None."""
    return next((kind for signature, kind in SIGNATURES.items() if image.startswith(signature)), None)


def content_type(image: bytes) -> str:
    kind = signature_type(image)
    if kind is None:
        raise Refused(415, "not a PNG or JPEG image")
    return kind


# --- the request, as each event source delivers it ------------------------------------------------

def is_http(event) -> bool:
    """A function URL, API Gateway (REST, HTTP 1.0 and 2.0) or an ALB: each sends a request context or an
    HTTP method; a bare {"body": ...} (a proxy event pared down by hand) is read the same way."""
    return isinstance(event, dict) and any(key in event for key in ("requestContext", "httpMethod", "body"))


def from_alb(event) -> bool:
    return isinstance(event, dict) and isinstance(event.get("requestContext"), dict) \
        and "elb" in event["requestContext"]


def http_method(event: dict) -> str:
    """1.0 payloads (REST, ALB) name it at the top, 2.0 (function URL, HTTP API) in requestContext.http."""
    method = event.get("httpMethod") or _mapping(_mapping(event.get("requestContext")).get("http")).get("method")
    method = method or "POST"
    return method.upper() if isinstance(method, str) else ""


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}  # API Gateway's console sends null for none


def _headers(event: dict) -> dict[str, str]:
    """Lower-cased names: function URLs and HTTP APIs lower-case them, REST APIs keep the client's case."""
    headers = {str(name).lower(): values[-1] for name, values in _mapping(event.get("multiValueHeaders")).items()
               if isinstance(values, list) and values}
    headers.update({str(name).lower(): value for name, value in _mapping(event.get("headers")).items()})
    return {name: value for name, value in headers.items() if isinstance(value, str)}


def _query(event: dict) -> dict[str, list[str]]:
    """Each parameter's values, decoded. 2.0 payloads carry the raw string (queryStringParameters joins
    repeated values with commas); REST APIs decode theirs; an ALB passes them as the client encoded them."""
    if isinstance(event.get("rawQueryString"), str):
        return urllib.parse.parse_qs(event["rawQueryString"].removeprefix("?"), keep_blank_values=True)
    single = {name: [value] for name, value in _mapping(event.get("queryStringParameters")).items()}
    parameters = _mapping(event.get("multiValueQueryStringParameters")) or single
    decode = urllib.parse.unquote_plus if from_alb(event) else str
    return {decode(name): [decode(v) for v in values if isinstance(v, str)] for name, values in parameters.items()
            if isinstance(values, list)}


def _body(event: dict) -> bytes | str:
    """The body: bytes when the source base64-encoded it (binary content types), else the text."""
    body = event.get("body")
    if body is None:  # REST API on a GET, or a POST without a body
        return ""
    if not isinstance(body, str):
        raise Refused(400, "the event's body must be a string: API Gateway and function URLs pass the JSON as text")
    if not event.get("isBase64Encoded"):
        return body
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(400, "the request body is marked isBase64Encoded but is not valid base64") from None


def _is_image_upload(media_type: str, body: bytes | str) -> bool:
    return media_type.startswith("image/") or media_type == "application/octet-stream" \
        or (isinstance(body, bytes) and signature_type(body) is not None)


def _json_object(body: bytes | str) -> dict:
    if not body:
        raise Refused(400, f"the request has no body: {USAGE}")
    try:  # a text body keeps a byte-order mark (PowerShell writes one); json.loads takes it only in bytes
        document = json.loads(body.removeprefix("\ufeff") if isinstance(body, str) else body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        raise Refused(400, f"the request body is not JSON: {USAGE}") from None
    if not isinstance(document, dict):
        raise Refused(400, f"the request body must be a JSON object: {USAGE}")
    return document


def _http_request(event: dict) -> dict:
    """{"url"|"image_b64"|"image": ..., "top_k"?} from the body (JSON, or the image itself) and the query."""
    body = _body(event)
    media_type = _headers(event).get("content-type", "").split(";")[0].strip().lower()
    if body and _is_image_upload(media_type, body):
        if isinstance(body, str):  # a REST API without binary media types passes binary as (mangled) text
            raise Refused(415, "the image arrived as text, not base64: send {\"image_b64\": ...} as JSON, or add "
                               "image/png and image/jpeg to the API's binary media types")
        request = {"image": body}
    else:
        request = _json_object(body)
        _check_fields(request)
    return {**request, **_query_fields(_query(event), request)}


def _query_fields(query: dict[str, list[str]], request: dict) -> dict:
    unknown = sorted(set(query) - QUERY_FIELDS)
    if unknown:
        raise Refused(400, f"unknown query parameter {unknown[0]!r}: the only one is top_k")
    if "top_k" not in query:
        return {}
    if "top_k" in request or len(query["top_k"]) != 1:
        raise Refused(400, "top_k is given more than once: give it once, in the query string or the body")
    value = query["top_k"][0]
    return {"top_k": int(value) if value.isascii() and value.isdigit() else value}


def _check_fields(request: dict) -> None:
    unknown = sorted(str(name) for name in set(request) - JSON_FIELDS)
    if unknown:
        raise Refused(400, f"unknown field {unknown[0]!r}: {USAGE}")
    if ("url" in request) == ("image_b64" in request):
        raise Refused(400, 'send exactly one of {"url": ...} or {"image_b64": ...}')


def _request(event) -> dict:
    if is_http(event):
        return _http_request(event)
    if not isinstance(event, dict):
        raise Refused(400, f"the event must be a JSON object: {USAGE}")
    _check_fields(event)
    return event


def _image(request: dict, limit: int) -> bytes:
    if "image" in request:  # the request's body
        image = request["image"]
    elif "url" in request:
        image = fetch(request["url"], limit, fetch_timeout())
    else:
        image = _decode_image_b64(request["image_b64"], limit)
    if len(image) > limit:
        raise Refused(413, f"the image is larger than {limit} bytes")
    return image


def _decode_image_b64(data, limit: int) -> bytes:
    """Base64 as clients write it (contract.base64_bytes): a data: URL, CRLF lines of 76, URL-safe."""
    longest = (limit * 4 // 3 + 4) * 78 // 76 + 256  # the lines' CRLFs and a data: URL's prefix
    if not isinstance(data, str) or len(data) > longest:
        raise Refused(413 if isinstance(data, str) else 400, f"image_b64 must be a string of at most "
                                                             f"{limit} bytes once decoded")
    try:
        return contract.base64_bytes(data)
    except ValueError as error:
        raise Refused(400, f"image_b64 {error}") from None


def _top_k(request: dict) -> int:
    k = request.get("top_k", contract.DEFAULT_TOP_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
        raise Refused(400, f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return k


# --- the endpoint ---------------------------------------------------------------------------------

def runtime():
    global _runtime
    if _runtime is None:  # one client per Lambda container, reused across invocations
        # One attempt, so that INVOKE_TIMEOUT_S bounds the call: botocore retries a read timeout too
        # (its max_attempts counts retries: 2 meant 3 calls, 3 x 30 s past the function's timeout). A
        # throttled or loading endpoint is the caller's 429 or 503 to retry.
        _runtime = boto3.client("sagemaker-runtime", config=Config(
            connect_timeout=5, read_timeout=invoke_timeout(), retries={"total_max_attempts": 1, "mode": "standard"}))
    return _runtime


def classify(endpoint: str, image: bytes, kind: str, k: int) -> dict:
    """The endpoint's answer, or the caller's share of why there is none (the log has the rest)."""
    try:
        response = runtime().invoke_endpoint(EndpointName=endpoint, ContentType=kind, Body=image,
                                             Accept=contract.RESPONSE_TYPE,
                                             CustomAttributes=contract.top_k_attribute(k))
        body = response["Body"].read()
    except ClientError as error:
        print(f"invoke_endpoint failed: {error}")  # CloudWatch; the caller gets no internals
        return _endpoint_error(error.response)
    except (ReadTimeoutError, ConnectTimeoutError):
        return _answer(504, {"error": f"the endpoint did not answer within {invoke_timeout():g} s"})
    except BotoCoreError as error:  # could not connect, no credentials, a broken stream, ...
        print(f"invoke_endpoint failed: {error}")
        return _answer(502, {"error": "the endpoint could not be called"})
    predictions = _predictions(body)
    if predictions is None:
        print(f"the endpoint answered {len(body)} bytes that are not {{\"predictions\": [...]}}: {body[:200]!r}")
        return _answer(502, {"error": "the endpoint's answer is not a list of predictions (is it this kit's model?)"})
    return _answer(200, {"predictions": predictions[:k], "endpoint": endpoint})


def _endpoint_error(response: dict) -> dict:
    """SageMaker's refusal as an honest status: the container's 4xx about the image passes through, a busy
    or loading endpoint says try again, and everything else (not found, not in service, no permission,
    internal failures) is the endpoint's fault, a 502."""
    code = response.get("Error", {}).get("Code", "")
    if code == "ModelError":
        return _model_error(response.get("OriginalStatusCode"), response.get("OriginalMessage"))
    if code in TRY_AGAIN:
        status, error = TRY_AGAIN[code]
        return _answer(status, {"error": error})
    return _answer(502, {"error": "the endpoint could not be called"})


def _model_error(status, message) -> dict:
    """The container answered 4xx/5xx (SageMaker's ModelError carries its status and body)."""
    if status in IMAGE_REFUSALS:
        reason = _container_reason(message)
        return _answer(status, {"error": "the model refused the image" + (f": {reason}" if reason else "")})
    if status in (429, 503):  # the model server's queue is full or its workers are starting
        return _answer(503, {"error": "the model is busy; try again shortly"})
    return _answer(502, {"error": f"the model failed on the image (HTTP {status})"})


def _container_reason(message) -> str:
    """The reason a container gave for a 4xx: its JSON's "error", or the first line of its text."""
    if not isinstance(message, str):
        return ""
    try:
        document = json.loads(message)
        reason = document.get("error") if isinstance(document, dict) else None
    except ValueError:
        reason = None
    reason = reason if isinstance(reason, str) else message
    return reason.strip().splitlines()[0][:MAX_REASON] if reason.strip() else ""


def _predictions(body: bytes) -> list | None:
    """The kit's {"predictions": [{"label", "probability"}, ...]}, or None for anything else."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list) or not all(
            isinstance(p, dict) and isinstance(p.get("label"), str) and isinstance(p.get("probability"), (int, float))
            and not isinstance(p["probability"], bool) for p in predictions):
        return None
    return predictions


# --- the answer, as each event source needs it ----------------------------------------------------

def _answer(status: int, body: dict | None, headers: dict | None = None) -> dict:
    """statusCode, headers, body, isBase64Encoded: what function URLs, HTTP APIs and REST APIs all take
    (a REST API refuses any other key: 502 "Malformed Lambda proxy response")."""
    headers = {"Content-Type": "application/json", **(headers or {})} if body is not None else headers or {}
    return {"statusCode": status, "headers": headers, "body": json.dumps(body) if body is not None else "",
            "isBase64Encoded": False}


def for_source(event, answer: dict) -> dict:
    """An ALB also needs statusDescription ("200 OK"), and multiValueHeaders instead of headers when its
    target group has multi-value headers on (it then sends multiValueHeaders in the event)."""
    if not from_alb(event):
        return answer
    status = answer["statusCode"]
    answer = {**answer, "statusDescription": f"{status} {http.HTTPStatus(status).phrase}"}
    if "multiValueHeaders" in event:
        answer["multiValueHeaders"] = {name: [value] for name, value in answer.pop("headers").items()}
    return answer


def _method_answer(method: str) -> dict | None:
    """OPTIONS says what is allowed; any method but POST is a 405 (a GET never classifies)."""
    allow = {"Allow": ", ".join(ALLOWED_METHODS)}
    if method == "OPTIONS":
        return _answer(204, None, allow)
    if method != "POST":
        return _answer(405, {"error": f"method {method or '?'} is not allowed: {USAGE}"}, allow)
    return None


def handler(event, context=None) -> dict:
    return for_source(event, _handle(event))


def _handle(event) -> dict:
    endpoint = os.environ.get("ENDPOINT_NAME")
    if not endpoint:
        return _answer(500, {"error": "the function has no ENDPOINT_NAME configured"})
    if is_http(event) and (answer := _method_answer(http_method(event))):
        return answer
    return _classify_request(endpoint, event)


def _classify_request(endpoint: str, event) -> dict:
    try:
        limit = max_image_bytes()
        request = _request(event)
        k = _top_k(request)
        image = _image(request, limit)
        if not image:
            raise Refused(400, "the image is empty")
        kind = content_type(image)
    except Refused as refused:
        return _answer(refused.status, {"error": str(refused)})
    return classify(endpoint, image, kind, k)
