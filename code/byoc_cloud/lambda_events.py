"""The endpoint Lambda's requests as each event source delivers them, and its answers as each needs them.

Requests:
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

Answers: {"statusCode", "headers", "body", "isBase64Encoded": false}, the body JSON. That is what
function URLs and API Gateway take (a REST API refuses any other key with a 502); an ALB's answer also
carries statusDescription ("200 OK"), and multiValueHeaders instead of headers when its target group
sends multi-value headers.

Standard library only: `make lambda-zip` packages it with the function.
"""
import base64
import binascii
import http
import json
import urllib.parse

ALLOWED_METHODS = ("OPTIONS", "POST")
JSON_FIELDS = {"url", "image_b64", "top_k"}
QUERY_FIELDS = {"top_k"}
USAGE = ('POST {"url": "https://..."} or {"image_b64": "..."} as JSON (optional "top_k"), or the PNG or JPEG '
         'itself with its Content-Type (optional ?top_k=)')
SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


class Refused(Exception):
    """A request the function will not pass on: its HTTP status and the reason the caller reads."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def signature_type(image: bytes) -> str | None:
    """image/png or image/jpeg by the file's first bytes, or None."""
    return next((kind for signature, kind in SIGNATURES.items() if image.startswith(signature)), None)


def content_type(image: bytes) -> str:
    kind = signature_type(image)
    if kind is None:
        raise Refused(415, "not a PNG or JPEG image")
    return kind


# --- the request ---------------------------------------------------------------------------------

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


def request(event) -> dict:
    if is_http(event):
        return _http_request(event)
    if not isinstance(event, dict):
        raise Refused(400, f"the event must be a JSON object: {USAGE}")
    _check_fields(event)
    return event


# --- the answer ----------------------------------------------------------------------------------

def answer(status: int, body: dict | None, headers: dict | None = None) -> dict:
    """statusCode, headers, body, isBase64Encoded: what function URLs, HTTP APIs and REST APIs all take
    (a REST API refuses any other key: 502 "Malformed Lambda proxy response")."""
    headers = {"Content-Type": "application/json", **(headers or {})} if body is not None else headers or {}
    return {"statusCode": status, "headers": headers, "body": json.dumps(body) if body is not None else "",
            "isBase64Encoded": False}


def for_source(event, reply: dict) -> dict:
    """An ALB also needs statusDescription ("200 OK"), and multiValueHeaders instead of headers when its
    target group has multi-value headers on (it then sends multiValueHeaders in the event)."""
    if not from_alb(event):
        return reply
    status = reply["statusCode"]
    reply = {**reply, "statusDescription": f"{status} {http.HTTPStatus(status).phrase}"}
    if "multiValueHeaders" in event:
        reply["multiValueHeaders"] = {name: [value] for name, value in reply.pop("headers").items()}
    return reply


def method_answer(method: str) -> dict | None:
    """OPTIONS says what is allowed; any method but POST is a 405 (a GET never classifies)."""
    allow = {"Allow": ", ".join(ALLOWED_METHODS)}
    if method == "OPTIONS":
        return answer(204, None, allow)
    if method != "POST":
        return answer(405, {"error": f"method {method or '?'} is not allowed: {USAGE}"}, allow)
    return None
