"""AWS Lambda function: classify an image with the SageMaker endpoint named in ENDPOINT_NAME.

The request comes from any source AWS delivers it from (byoc_cloud.lambda_events): the image by URL
(fetched by byoc_cloud.lambda_urls, never from a private address), as base64 (in any form clients
write it: contract.base64_bytes), or as the HTTP body itself; optional top_k. The answer's body is
{"predictions": [{"label", "probability"}, ...], "endpoint": ...} or {"error": "..."}.

The endpoint's answers: the container's 4xx about the image (400, 413, 415, 422) passes through with its
reason; a throttled endpoint is a 429, a model not ready or busy or SageMaker unavailable a 503, a
timeout a 504; anything else (no such endpoint, not in service, no permission, the container's 5xx,
SageMaker's internal failures, a 200 that is not the kit's predictions) a 502 whose details go to
the log only. One attempt per request: INVOKE_TIMEOUT_S bounds it.

Standard library and boto3 (both in Lambda's Python runtime) plus byoc.contract, which names
what the endpoint takes: `make lambda-zip` packages this file with those modules (lambda_package).

Environment: ENDPOINT_NAME; ENDPOINT_TYPE (realtime or serverless: the largest image the endpoint
takes, contract.MAX_INVOKE_BYTES); optional MAX_IMAGE_BYTES (lower only), FETCH_TIMEOUT_S (5),
INVOKE_TIMEOUT_S (30), ALLOW_PRIVATE_URLS (tests only). `byoc-cloud lambda deploy` sets them.
"""
import json
import os

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from byoc import contract
from byoc_cloud import lambda_events as events
from byoc_cloud import lambda_urls

DEFAULT_INVOKE_TIMEOUT_S = 30.0
DEFAULT_FETCH_TIMEOUT_S = 5.0
MAX_TOP_K = 100  # the endpoint answers at most its number of classes
IMAGE_REFUSALS = (400, 413, 415, 422)  # a container's 4xx about the image; others are its own fault
MAX_REASON = 300
# sagemaker-runtime's errors that mean "not now" (its service model: ModelNotReadyException 429,
# ServiceUnavailable 503; ThrottlingException is common to AWS APIs). The rest are a 502.
TRY_AGAIN = {"ThrottlingException": (429, "the endpoint is receiving too many requests; try again shortly"),
             "ModelNotReadyException": (503, "the model is not ready yet; try again shortly"),
             "ServiceUnavailable": (503, "SageMaker is unavailable; try again shortly")}

_runtime = None


def max_image_bytes() -> int:
    """The endpoint type's limit (ENDPOINT_TYPE), or MAX_IMAGE_BYTES if that is lower."""
    kind = os.environ.get("ENDPOINT_TYPE", "realtime")
    if kind not in contract.MAX_INVOKE_BYTES:
        raise events.Refused(500, f"the function's ENDPOINT_TYPE {kind!r} is not one of {', '.join(contract.ENDPOINT_TYPES)}")
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


def _image(request: dict, limit: int) -> bytes:
    if "image" in request:  # the request's body
        image = request["image"]
    elif "url" in request:
        image = lambda_urls.fetch(request["url"], limit, fetch_timeout())
    else:
        image = _decode_image_b64(request["image_b64"], limit)
    if len(image) > limit:
        raise events.Refused(413, f"the image is larger than {limit} bytes")
    return image


def _decode_image_b64(data, limit: int) -> bytes:
    """Base64 as clients write it (contract.base64_bytes): a data: URL, CRLF lines of 76, URL-safe."""
    longest = (limit * 4 // 3 + 4) * 78 // 76 + 256  # the lines' CRLFs and a data: URL's prefix
    if not isinstance(data, str) or len(data) > longest:
        raise events.Refused(413 if isinstance(data, str) else 400, f"image_b64 must be a string of at most "
                                                             f"{limit} bytes once decoded")
    try:
        return contract.base64_bytes(data)
    except ValueError as error:
        raise events.Refused(400, f"image_b64 {error}") from None


def _top_k(request: dict) -> int:
    k = request.get("top_k", contract.DEFAULT_TOP_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
        raise events.Refused(400, f"top_k must be an integer from 1 to {MAX_TOP_K}")
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
        return events.answer(504, {"error": f"the endpoint did not answer within {invoke_timeout():g} s"})
    except BotoCoreError as error:  # could not connect, no credentials, a broken stream, ...
        print(f"invoke_endpoint failed: {error}")
        return events.answer(502, {"error": "the endpoint could not be called"})
    predictions = _predictions(body)
    if predictions is None:
        print(f"the endpoint answered {len(body)} bytes that are not {{\"predictions\": [...]}}: {body[:200]!r}")
        return events.answer(502, {"error": "the endpoint's answer is not a list of predictions (is it this kit's model?)"})
    return events.answer(200, {"predictions": predictions[:k], "endpoint": endpoint})


def _endpoint_error(response: dict) -> dict:
    """SageMaker's refusal as an honest status: the container's 4xx about the image passes through, a busy
    or loading endpoint says try again, and everything else (not found, not in service, no permission,
    internal failures) is the endpoint's fault, a 502."""
    code = response.get("Error", {}).get("Code", "")
    if code == "ModelError":
        return _model_error(response.get("OriginalStatusCode"), response.get("OriginalMessage"))
    if code in TRY_AGAIN:
        status, error = TRY_AGAIN[code]
        return events.answer(status, {"error": error})
    return events.answer(502, {"error": "the endpoint could not be called"})


def _model_error(status, message) -> dict:
    """The container answered 4xx/5xx (SageMaker's ModelError carries its status and body)."""
    if status in IMAGE_REFUSALS:
        reason = _container_reason(message)
        return events.answer(status, {"error": "the model refused the image" + (f": {reason}" if reason else "")})
    if status in (429, 503):  # the model server's queue is full or its workers are starting
        return events.answer(503, {"error": "the model is busy; try again shortly"})
    return events.answer(502, {"error": f"the model failed on the image (HTTP {status})"})


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


def handler(event, context=None) -> dict:
    return events.for_source(event, _handle(event))


def _handle(event) -> dict:
    endpoint = os.environ.get("ENDPOINT_NAME")
    if not endpoint:
        return events.answer(500, {"error": "the function has no ENDPOINT_NAME configured"})
    if events.is_http(event) and (reply := events.method_answer(events.http_method(event))):
        return reply
    return _classify_request(endpoint, event)


def _classify_request(endpoint: str, event) -> dict:
    try:
        limit = max_image_bytes()
        request = events.request(event)
        k = _top_k(request)
        image = _image(request, limit)
        if not image:
            raise events.Refused(400, "the image is empty")
        kind = events.content_type(image)
    except events.Refused as refused:
        return events.answer(refused.status, {"error": str(refused)})
    return classify(endpoint, image, kind, k)
