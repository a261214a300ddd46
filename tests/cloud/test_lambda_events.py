"""The endpoint Lambda driven with events and service answers as AWS delivers them.

Events: each source's request as its documentation shows it, through the real handler:
- function URL and API Gateway HTTP API, payload 2.0 (docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html,
  apigateway/latest/developerguide/http-api-develop-integrations-lambda.html): lower-case headers,
  rawQueryString, the method in requestContext.http, a body base64-encoded unless its type is text or
  JSON, no body key on a GET;
- API Gateway REST and HTTP API 1.0 (set-up-lambda-proxy-integrations.html): httpMethod, headers as the
  client cased them, multiValueHeaders, queryStringParameters null when there are none, body null on a GET;
- an ALB target (elasticloadbalancing/latest/application/lambda-functions.html): query parameters as the
  client encoded them, multi-value headers when the target group turns them on, and an answer that must
  carry isBase64Encoded and statusDescription ("200 OK"), in multiValueHeaders when those are on;
- the Lambda console's default test event ({"key1": "value1", ...}) and direct invocations.

The endpoint: boto3's real sagemaker-runtime client against a loopback stand-in that answers
POST /endpoints/NAME/invocations as SageMaker does: the container's JSON on success, errors with the
status botocore's service model gives each (ModelError 424 with OriginalStatusCode and OriginalMessage,
ModelNotReadyException 429, ServiceUnavailable 503, ...), the x-amzn-ErrorType header and a JSON
message, so botocore raises exactly what it raises in AWS.
"""
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
import pytest

from byoc import contract
from byoc_cloud import endpoint_lambda, lambda_events

ENDPOINT = "fashion"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64
LABELS = ["Sneaker", "Sandal", "Ankle boot", "Bag", "Shirt", "Pullover", "Coat", "Dress", "Trouser", "T-shirt/top"]
ERRORS = {shape.name: shape for shape in botocore.session.get_session().get_service_model("sagemaker-runtime")
          .operation_model("InvokeEndpoint").error_shapes}


class Runtime:
    """What the stand-in answers next (a function of the request), and the requests it received."""

    def __init__(self):
        self.requests = []
        self.answer = self.kit_container

    @staticmethod
    def kit_container(request) -> tuple[int, dict, bytes]:
        """The kit's container behind SageMaker: the k best classes, k from the custom attribute."""
        k = int(request["headers"][contract.CUSTOM_ATTRIBUTES_HEADER].split("=")[1])
        predictions = [{"label": label, "probability": round(0.5 / (i + 1), 4)} for i, label in enumerate(LABELS)]
        return 200, {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": "AllTraffic"}, \
            json.dumps({"predictions": predictions[:k]}).encode()


def service_error(code: str, message: str, status: int | None = None, **members) -> tuple[int, dict, bytes]:
    """An error as SageMaker's runtime sends it (rest-json): the code in x-amzn-ErrorType, a JSON body."""
    status = status or ERRORS[code].metadata["error"]["httpStatusCode"]
    headers = {"Content-Type": "application/json",
               "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker.runtime/"}
    return status, headers, json.dumps({"message": message, **members}).encode()


def model_error(original_status: int, original_message: str) -> tuple[int, dict, bytes]:
    """The container answered 4xx/5xx: SageMaker's ModelError (424) carrying its status and body."""
    kind = "client" if original_status < 500 else "server"
    return service_error("ModelError", f'Received {kind} error ({original_status}) from primary with message '
                                       f'"{original_message}". See https://us-east-1.console.aws.amazon.com/cloudwatch/'
                                       f'home?region=us-east-1#logEventViewer:group=/aws/sagemaker/Endpoints/{ENDPOINT} '
                                       'in account 123456789012 for more information.',
                         ErrorCode=f"{kind.upper()}_ERROR_FROM_MODEL", OriginalStatusCode=original_status,
                         OriginalMessage=original_message,
                         LogStreamArn=f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}")


@pytest.fixture
def runtime(point_lambda):
    state = Runtime()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = {"path": self.path, "headers": dict(self.headers), "body": body}
            state.requests.append(request)
            if self.path != f"/endpoints/{ENDPOINT}/invocations":
                status, headers, answer = service_error(
                    "ValidationError", f"Endpoint {self.path.split('/')[2]} of account 123456789012 not found.")
            else:
                status, headers, answer = state.answer(request)
            self.send_response(status)
            for name, value in {**headers, "x-amzn-RequestId": "d0f7c3a2-0000-4000-8000-000000000000",
                                "Content-Length": str(len(answer))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    point_lambda(ENDPOINT, f"http://127.0.0.1:{server.server_address[1]}", allow_private_urls=False)
    yield state
    server.shutdown()


# --- events as each source sends them -------------------------------------------------------------

def encoded(body: bytes | str | None, content_type: str | None) -> tuple[str | None, bool]:
    """The body as a function URL, HTTP API or ALB passes it: text and JSON as is, anything else base64."""
    if body is None:
        return None, False
    text_like = content_type and (content_type.startswith("text/") or content_type.split(";")[0] in (
        "application/json", "application/javascript", "application/xml"))
    if text_like:
        return (body.decode() if isinstance(body, bytes) else body), False
    return base64.b64encode(body.encode() if isinstance(body, str) else body).decode(), True


def function_url(method="POST", body=None, content_type="application/json", query=""):
    """Payload format 2.0, as a function URL (and an HTTP API with version 2.0) sends it."""
    headers = {"host": "abcdefg.lambda-url.us-east-1.on.aws", "user-agent": "curl/8.5.0", "accept": "*/*",
               "x-amzn-trace-id": "Root=1-6252dbdd-2a88d899750a6e1f3", "x-forwarded-proto": "https",
               "x-forwarded-port": "443", "x-forwarded-for": "203.0.113.7"}
    if content_type:
        headers["content-type"] = content_type
    event = {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": query, "headers": headers,
             "requestContext": {"accountId": "123456789012", "apiId": "abcdefg", "domainName":
                                "abcdefg.lambda-url.us-east-1.on.aws", "domainPrefix": "abcdefg",
                                "http": {"method": method, "path": "/", "protocol": "HTTP/1.1",
                                         "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
                                "requestId": "id", "routeKey": "$default", "stage": "$default",
                                "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390},
             "isBase64Encoded": False}
    if query:  # queryStringParameters joins a repeated parameter's values with commas
        pairs = [pair.split("=", 1) for pair in query.split("&")]
        event["queryStringParameters"] = {name: ",".join(v for n, v in pairs if n == name) for name, _ in pairs}
    if body is not None:  # a GET has no body key at all
        event["body"], event["isBase64Encoded"] = encoded(body, content_type)
    return event


def http_api_v2(**kwargs):
    event = function_url(**kwargs)
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /classify"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/classify"
    event["requestContext"]["domainName"] = "r3pmxmplak.execute-api.us-east-1.amazonaws.com"
    return event


def rest_api(method="POST", body=None, content_type="application/json", query=None, binary=True):
    """Payload format 1.0, as a REST API (Lambda proxy integration) or an HTTP API with 1.0 sends it.
    binary: the API lists image/* among its binary media types (else binary arrives as text)."""
    headers = {"Accept": "*/*", "Host": "r3pmxmplak.execute-api.us-east-1.amazonaws.com", "User-Agent": "curl/8.5.0",
               "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Port": "443", "X-Forwarded-Proto": "https"}
    if content_type:
        headers["Content-Type"] = content_type
    text, is_b64 = encoded(body, content_type) if binary or body is None else (
        body.decode("utf-8", "replace") if isinstance(body, bytes) else body, False)
    return {"resource": "/classify", "path": "/classify", "httpMethod": method, "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": {n: v[-1] for n, v in query.items()} if query else None,
            "multiValueQueryStringParameters": query or None, "pathParameters": None, "stageVariables": None,
            "requestContext": {"resourceId": "2gxmpl", "resourcePath": "/classify", "httpMethod": method,
                               "path": "/prod/classify", "accountId": "123456789012", "protocol": "HTTP/1.1",
                               "stage": "prod", "requestId": "e0d9bc4c", "apiId": "r3pmxmplak",
                               "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"}},
            "body": text, "isBase64Encoded": is_b64}


def alb(method="POST", body=None, content_type="application/json", query=None, multi_value=False):
    """An ALB's event: query parameters as the client encoded them; multi-value when the target group says so."""
    headers = {"accept": "*/*", "host": "lambda-846800462-us-east-2.elb.amazonaws.com", "user-agent": "curl/8.5.0",
               "x-amzn-trace-id": "Root=1-5bdb40ca-556d8b0c50dc66f0511bf520", "x-forwarded-for": "72.21.198.66",
               "x-forwarded-port": "443", "x-forwarded-proto": "https"}
    if content_type:
        headers["content-type"] = content_type
    text, is_b64 = encoded(body, content_type) if body is not None else ("", False)  # a GET: body ""
    event = {"requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-2:123456789012:"
                                                          "targetgroup/my-target-group/6d0ecf831eec9f09"}},
             "httpMethod": method, "path": "/", "body": text, "isBase64Encoded": is_b64}
    if multi_value:
        event["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
        event["multiValueQueryStringParameters"] = query or {}
    else:
        event["headers"] = headers
        event["queryStringParameters"] = {n: v[-1] for n, v in (query or {}).items()}
    return event


SOURCES = {"function URL": function_url, "HTTP API 2.0": http_api_v2, "REST API": rest_api, "ALB": alb,
           "ALB multi-value": lambda **kw: alb(multi_value=True, **kw)}


def answer_of(event):
    """The handler's answer, checked against what the event's source accepts, and (status, body, headers)."""
    answer = endpoint_lambda.handler(event, None)
    if isinstance(event, dict) and "elb" in (event.get("requestContext") or {}):  # all of these, and no other
        headers = "multiValueHeaders" if "multiValueHeaders" in event else "headers"
        assert set(answer) == {"statusCode", "statusDescription", "isBase64Encoded", headers, "body"}, answer
        assert answer["statusDescription"].split(" ", 1)[0] == str(answer["statusCode"]), answer
    else:  # a REST API refuses any other key (502 "Malformed Lambda proxy response")
        assert "statusCode" in answer and set(answer) <= {"statusCode", "headers", "body", "isBase64Encoded"}, answer
    assert isinstance(answer["statusCode"], int) and isinstance(answer["body"], str)
    assert not answer.get("isBase64Encoded")
    headers = answer.get("headers") or {n: v[-1] for n, v in answer.get("multiValueHeaders", {}).items()}
    assert all(isinstance(v, str) for v in headers.values()), headers
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else None, headers


# --- requests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", SOURCES)
def test_each_source_posts_json_and_hears_an_answer_it_accepts(runtime, source):
    event = SOURCES[source](body=json.dumps({"image_b64": base64.b64encode(PNG).decode(), "top_k": 2}),
                            content_type="application/json; charset=utf-8")
    status, body, headers = answer_of(event)
    assert status == 200 and [p["label"] for p in body["predictions"]] == LABELS[:2], body
    assert headers["Content-Type"] == "application/json"
    assert runtime.requests[-1]["headers"]["Content-Type"] == "image/png"


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("image, kind", [(PNG, "image/png"), (JPEG, "image/jpeg")])
def test_the_image_itself_as_the_body(runtime, source, image, kind):
    """curl --data-binary @shoe.png -H 'Content-Type: image/png' URL?top_k=3: the source base64-encodes it."""
    query = "top_k=3" if source.startswith(("function", "HTTP")) else {"top_k": ["3"]}
    status, body, _ = answer_of(SOURCES[source](body=image, content_type=kind, query=query))
    assert status == 200 and len(body["predictions"]) == 3, body
    sent = runtime.requests[-1]
    assert sent["body"] == image and sent["headers"]["Content-Type"] == kind
    assert sent["headers"][contract.CUSTOM_ATTRIBUTES_HEADER] == contract.top_k_attribute(3)


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/x-www-form-urlencoded"])
def test_an_image_is_known_by_its_bytes_whatever_the_type_says(runtime, content_type):
    """Without a type (or curl's default form type) a function URL base64-encodes the body: its bytes tell."""
    status, body, _ = answer_of(function_url(body=PNG, content_type=content_type))
    assert status == 200 and len(body["predictions"]) == 5


def test_an_image_type_with_other_bytes_is_a_415_not_a_json_error(runtime):
    assert answer_of(function_url(body=b"GIF89a...", content_type="image/gif"))[:2] == \
        (415, {"error": "not a PNG or JPEG image"})
    assert runtime.requests == []


def test_a_rest_api_without_binary_media_types_gets_a_clear_refusal(runtime):
    status, body, _ = answer_of(rest_api(body=PNG, content_type="image/png", binary=False))
    assert status == 415 and "binary media types" in body["error"], body
    assert runtime.requests == []


def test_top_k_in_the_query_string(runtime):
    url = json.dumps({"image_b64": base64.b64encode(PNG).decode()})
    assert len(answer_of(function_url(body=url, query="top_k=3"))[1]["predictions"]) == 3
    assert len(answer_of(rest_api(body=url, query={"top_k": ["4"]}))[1]["predictions"]) == 4
    assert len(answer_of(alb(body=url, query={"top%5Fk": ["%32"]}))[1]["predictions"]) == 2  # ALB: not decoded
    assert len(runtime.requests) == 3


@pytest.mark.parametrize("query, error", [
    ("top_k=0", "top_k must be an integer from 1 to 100"),
    ("top_k=three", "top_k must be an integer from 1 to 100"),
    ("top_k=", "top_k must be an integer from 1 to 100"),
    ("top_k=3&top_k=5", "top_k is given more than once"),
    ("topk=3", "unknown query parameter 'topk'"),
])
def test_bad_query_strings_are_a_400(runtime, query, error):
    status, body, _ = answer_of(function_url(body=PNG, content_type="image/png", query=query))
    assert status == 400 and body["error"].startswith(error), body
    assert runtime.requests == []


def test_top_k_twice_is_a_400(runtime):
    event = function_url(body=json.dumps({"image_b64": base64.b64encode(PNG).decode(), "top_k": 2}), query="top_k=3")
    assert answer_of(event)[0] == 400


@pytest.mark.parametrize("body, error", [
    (None, "the request has no body"),
    ("", "the request has no body"),
    ("[1, 2]", "the request body must be a JSON object"),
    ("42", "the request body must be a JSON object"),
    ('"https://example.com/shoe.jpg"', "the request body must be a JSON object"),
    ("null", "the request body must be a JSON object"),
    ("{not json", "the request body is not JSON"),
    ('{"image": "..."}', "unknown field 'image'"),
    ('{"url": "https://example.com/x.png", "topk": 3}', "unknown field 'topk'"),
    ('{"image_b64": "AA==", "top_k": "3"}', "top_k must be an integer"),
])
@pytest.mark.parametrize("source", SOURCES)
def test_bodies_that_are_not_a_request_are_a_400(runtime, source, body, error):
    status, answer, _ = answer_of(SOURCES[source](body=body))
    assert status == 400 and answer["error"].startswith(error), answer
    assert runtime.requests == []


@pytest.mark.parametrize("body", ["[" * 100_000, '{"url": ' * 100_000])
def test_json_nested_past_the_stack_is_a_400_not_a_crash(runtime, body):
    assert answer_of(function_url(body=body))[:2] == (400, {"error": f"the request body is not JSON: "
                                                                     f"{lambda_events.USAGE}"})


def test_json_with_a_byte_order_mark(runtime):
    """Windows PowerShell 5 writes UTF-8 files with a BOM; a function URL passes JSON on as text."""
    body = "\ufeff" + json.dumps({"image_b64": base64.b64encode(PNG).decode()})
    assert answer_of(function_url(body=body))[0] == 200
    assert answer_of(function_url(body=body.encode(), content_type="application/vnd.api+json"))[0] == 200


def test_an_image_body_over_the_limit_is_a_413(runtime, monkeypatch):
    monkeypatch.setenv("MAX_IMAGE_BYTES", "1000")
    status, body, _ = answer_of(function_url(body=PNG + b"\0" * 1000, content_type="image/png"))
    assert (status, body) == (413, {"error": "the image is larger than 1000 bytes"})
    assert runtime.requests == []


def test_an_image_type_without_a_body(runtime):
    status, body, _ = answer_of(rest_api(body=None, content_type="image/png"))
    assert status == 400 and body["error"].startswith("the request has no body"), body


@pytest.mark.parametrize("context", ["", [], {"http": None}, {"http": "POST"}])
def test_a_hand_made_event_with_an_odd_request_context(runtime, context):
    event = {"requestContext": context, "body": json.dumps({"image_b64": base64.b64encode(PNG).decode()})}
    assert answer_of(event)[0] == 200


def test_a_json_body_the_source_base64_encoded(runtime):
    """A type Lambda does not count as text (application/vnd.api+json) arrives base64-encoded."""
    event = function_url(body=json.dumps({"image_b64": base64.b64encode(PNG).decode()}),
                         content_type="application/vnd.api+json")
    assert event["isBase64Encoded"] and answer_of(event)[0] == 200


def test_a_body_marked_base64_that_is_not(runtime):
    event = function_url(body="{}", content_type="application/json")
    event["isBase64Encoded"] = True  # the old code raised binascii.Error here: a crash, not an answer
    status, body, _ = answer_of(event)
    assert status == 400 and "not valid base64" in body["error"]


def test_a_console_test_event_with_the_body_as_an_object(runtime):
    event = rest_api(body="{}")
    event["body"] = {"url": "https://example.com/shoe.jpg"}  # what people type into the console
    status, body, _ = answer_of(event)
    assert status == 400 and "body must be a string" in body["error"]


def console_proxy_event(body: str, query: dict | None) -> dict:
    """The fields of the console's "API Gateway AWS Proxy" test event that the function reads (SAM's
    samcli/lib/generated_sample_events/events/apigateway/AwsProxy.json): a base64 body, capitalised
    headers, a query string and a POST."""
    return {"body": base64.b64encode(body.encode()).decode(), "resource": "/{proxy+}", "path": "/path/to/resource",
            "httpMethod": "POST", "isBase64Encoded": True, "queryStringParameters": query,
            "multiValueQueryStringParameters": {n: [v] for n, v in query.items()} if query else None,
            "pathParameters": {"proxy": "/path/to/resource"}, "stageVariables": {"baz": "qux"},
            "headers": {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8",
                        "Host": "1234567890.execute-api.us-east-1.amazonaws.com", "X-Forwarded-Proto": "https"},
            "requestContext": {"accountId": "123456789012", "resourceId": "123456", "stage": "prod",
                               "httpMethod": "POST", "apiId": "1234567890", "protocol": "HTTP/1.1"}}


def test_a_rest_api_console_test_with_nulls_for_headers_and_query(runtime):
    """API Gateway's console "Test" sends null headers, multiValueHeaders and query parameters."""
    event = rest_api(body=json.dumps({"image_b64": base64.b64encode(PNG).decode()}))
    event.update(headers=None, multiValueHeaders=None, queryStringParameters=None, multiValueQueryStringParameters=None)
    assert answer_of(event)[0] == 200


def test_the_consoles_api_gateway_test_event(runtime):
    status, body, _ = answer_of(console_proxy_event('{"test":"body"}', {"foo": "bar"}))
    assert status == 400 and body["error"].startswith("unknown field 'test'"), body
    status, body, _ = answer_of(console_proxy_event('{"url": "https://example.com/x.png"}', {"foo": "bar"}))
    assert status == 400 and body["error"].startswith("unknown query parameter 'foo'"), body
    image = json.dumps({"image_b64": base64.b64encode(PNG).decode()})
    assert answer_of(console_proxy_event(image, {"top_k": "2"}))[0] == 200
    assert len(runtime.requests) == 1


@pytest.mark.parametrize("event", [
    {"key1": "value1", "key2": "value2", "key3": "value3"},  # the Lambda console's hello-world test event
    {"url": "https://example.com/x.png", "topk": 3},
    "https://example.com/x.png", None, 42,
])
def test_direct_invocations_that_are_not_a_request(runtime, event):
    status, body, _ = answer_of(event)
    assert status == 400 and body["error"], body
    assert runtime.requests == []


def test_a_direct_invocation(runtime):
    status, body, _ = answer_of({"image_b64": base64.b64encode(PNG).decode(), "top_k": 1})
    assert status == 200 and body == {"predictions": [{"label": LABELS[0], "probability": 0.5}], "endpoint": ENDPOINT}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH"])
def test_methods_other_than_post_are_a_405_with_allow(runtime, source, method):
    status, body, headers = answer_of(SOURCES[source](method=method, body=None))
    assert status == 405 and headers["Allow"] == "OPTIONS, POST" and method in body["error"]
    assert runtime.requests == []


@pytest.mark.parametrize("source", SOURCES)
def test_options_answers_what_is_allowed(runtime, source):
    event = SOURCES[source](method="OPTIONS", body=None, content_type=None)
    status, body, headers = answer_of(event)
    assert (status, body, headers) == (204, None, {"Allow": "OPTIONS, POST"})


def test_an_alb_health_check_gets_a_well_formed_answer(runtime):
    """The health check event from the ALB guide: GET /, body "", user-agent ELB-HealthChecker/2.0."""
    event = {"requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:region:123456789012:"
                                                          "targetgroup/my-target-group/6d0ecf831eec9f09"}},
             "httpMethod": "GET", "path": "/", "queryStringParameters": {},
             "headers": {"user-agent": "ELB-HealthChecker/2.0"}, "body": "", "isBase64Encoded": False}
    assert answer_of(event)[0] == 405


def test_refusals_reach_an_alb_in_its_format_too(runtime, monkeypatch):
    assert answer_of(alb(body="[]", multi_value=True))[0] == 400
    monkeypatch.delenv("ENDPOINT_NAME")
    assert answer_of(alb(body="{}"))[0] == 500


# --- the endpoint's answers, as botocore raises them ----------------------------------------------

def image_request():
    return function_url(body=json.dumps({"image_b64": base64.b64encode(PNG).decode()}))


@pytest.mark.parametrize("code, status", [
    ("ModelNotReadyException", 503), ("ServiceUnavailable", 503), ("InternalFailure", 502),
    ("InternalDependencyException", 502), ("ValidationError", 502),
])
def test_each_error_the_service_model_lists(runtime, code, status):
    runtime.answer = lambda request: service_error(code, "something went wrong inside")
    got, body, _ = answer_of(image_request())
    assert got == status and "something went wrong inside" not in body["error"], body


def test_the_service_model_lists_no_error_left_unmapped():
    """A new error in botocore's model should be looked at: each one above is tested by name."""
    assert set(ERRORS) == {"ModelError", "ModelNotReadyException", "ServiceUnavailable", "InternalFailure",
                           "InternalDependencyException", "ValidationError"}


@pytest.mark.parametrize("code, status, expected", [
    ("ThrottlingException", 400, 429),  # common to AWS APIs; botocore retries it once first
    ("AccessDeniedException", 400, 502),  # the role lacks sagemaker:InvokeEndpoint on this endpoint
    ("UnrecognizedClientException", 403, 502), ("ExpiredTokenException", 403, 502),
])
def test_errors_common_to_aws_apis(runtime, code, status, expected):
    runtime.answer = lambda request: service_error(code, "no", status=status)
    assert answer_of(image_request())[0] == expected


def test_an_endpoint_that_does_not_exist(runtime, monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "no-such-endpoint")
    assert answer_of(image_request())[:2] == (502, {"error": "the endpoint could not be called"})


@pytest.mark.parametrize("original_status, original_message, status, error", [
    (400, json.dumps({"error": "image.png has a damaged PNG header.", "status": 400}), 400,
     "the model refused the image: image.png has a damaged PNG header."),
    (413, json.dumps({"error": "image.png is 20000x20000 pixels", "status": 413}), 413,
     "the model refused the image: image.png is 20000x20000 pixels"),
    (415, "Unsupported content type image/webp", 415, "the model refused the image: Unsupported content type image/webp"),
    (400, json.dumps(["not", "an", "object"]), 400, 'the model refused the image: ["not", "an", "object"]'),
    (400, "", 400, "the model refused the image"),
    (404, "<html>Not Found</html>", 502, "the model failed on the image (HTTP 404)"),
    (503, json.dumps({"code": 503, "type": "ServiceUnavailableException", "message": "No worker is available"}), 503,
     "the model is busy; try again shortly"),
    (500, 'Traceback (most recent call last):\n  File "/opt/ml/code/handler.py"', 502,
     "the model failed on the image (HTTP 500)"),
    (0, "Your invocation timed out while waiting for a response from container primary.", 502,
     "the model failed on the image (HTTP 0)"),
])
def test_the_containers_errors(runtime, original_status, original_message, status, error):
    runtime.answer = lambda request: model_error(original_status, original_message)
    assert answer_of(image_request())[:2] == (status, {"error": error})


@pytest.mark.parametrize("answer", [
    b"", b"<html>ok</html>", b"[0.1, 0.9]", b'{"predictions": "Sneaker"}', b'{"Sneaker": 0.97}',
    b'{"predictions": [{"label": "Sneaker"}]}', b'{"predictions": [{"label": 3, "probability": 0.9}]}',
    b'{"predictions": [{"label": "Sneaker", "probability": true}]}', b"\xff\xfe\x00",
])
def test_a_200_that_is_not_the_kits_answer_is_a_502(runtime, answer, capsys):
    """An older model, another container, a multi-model endpoint's own answer: never a traceback."""
    runtime.answer = lambda request: (200, {"Content-Type": "application/json"}, answer)
    status, body, _ = answer_of(image_request())
    assert status == 502 and "not a list of predictions" in body["error"], body
    assert "not {\"predictions\"" in capsys.readouterr().out


def test_a_throttled_endpoint_is_called_once_and_the_caller_hears_429(runtime):
    runtime.answer = lambda request: service_error("ThrottlingException", "Rate exceeded", status=400)
    status, body, _ = answer_of(image_request())
    assert status == 429 and "try again" in body["error"] and len(runtime.requests) == 1


def test_invoke_timeout_bounds_the_whole_call(runtime, monkeypatch):
    """botocore would retry a read timeout: three calls of INVOKE_TIMEOUT_S each, past the function's
    --timeout (deploy leaves 5 s beyond fetch + invoke), so Lambda would kill it instead of a 504."""
    monkeypatch.setenv("INVOKE_TIMEOUT_S", "1")

    def slow(request):
        time.sleep(2.5)
        return Runtime.kit_container(request)
    runtime.answer = slow
    start = time.monotonic()
    status, body, _ = answer_of(image_request())
    assert (status, body) == (504, {"error": "the endpoint did not answer within 1 s"})
    assert time.monotonic() - start < 2 and len(runtime.requests) == 1


IMAGE_B64_AS_WRITTEN = {  # image_b64 as clients write it (contract.base64_bytes reads each)
    "a browser's data URL": lambda image: "data:image/png;base64," + base64.b64encode(image).decode(),
    "lines of 76, CRLF": lambda image: base64.encodebytes(image).decode().replace("\n", "\r\n"),
    "the URL-safe alphabet, no padding": lambda image: base64.urlsafe_b64encode(image).decode().rstrip("="),
}


@pytest.mark.parametrize("written", IMAGE_B64_AS_WRITTEN.values(), ids=IMAGE_B64_AS_WRITTEN)
def test_image_b64_as_clients_write_it_reaches_the_endpoint_as_the_image(runtime, written):
    image = PNG + bytes(range(256)) * 4  # long enough for lines, and for + / (or - _) in its base64
    answer = endpoint_lambda.handler({"image_b64": written(image)}, None)
    assert answer["statusCode"] == 200, answer["body"]
    assert runtime.requests[-1]["body"] == image
