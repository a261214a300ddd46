"""What a batch transform job sees of the serving image: GET /execution-parameters, the body limit
raised by SAGEMAKER_MAX_PAYLOAD_IN_MB, and MultiRecord requests of many JSON lines answered line
by line (a bad line by an error line), with no worker lost."""
import base64
import json

import pytest
import requests

import support
from support import start_serving

pytestmark = pytest.mark.docker


def test_execution_parameters_describe_the_server(endpoint):
    response = requests.get(f"{endpoint.url}/execution-parameters", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"MaxConcurrentTransforms": 8, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}
    assert requests.post(f"{endpoint.url}/execution-parameters", timeout=5).status_code == 405


def test_a_transform_jobs_payload_limit_is_honoured(docker_client, trained, small_data):
    """MaxPayloadInMB 20: a 10 MB body, over the real-time 6 MB, is read; the parameters say 20."""
    endpoint = start_serving(docker_client, trained.opt_ml / "model",
                             environment={"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
                                          "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD"})
    try:
        parameters = requests.get(f"{endpoint.url}/execution-parameters", timeout=5).json()
        assert parameters == {"MaxConcurrentTransforms": 5, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 20}
        image = next((small_data / "test" / "001.T-shirt_top").glob("*.png")).read_bytes()
        padded = image + b"\0" * (10 * 1024 * 1024)  # PNG decoders stop at IEND: trailing bytes are ignored
        response = requests.post(f"{endpoint.url}/invocations", data=padded,
                                 headers={"Content-Type": "image/png"}, timeout=60)
        assert response.status_code == 200, response.text
        over = requests.post(f"{endpoint.url}/invocations", data=b"\0" * (21 * 1024 * 1024),
                             headers={"Content-Type": "image/png"}, timeout=60)
        assert over.status_code == 413 and "BYOC_MAX_PAYLOAD_MB" in over.json()["error"]
    finally:
        endpoint.container.remove(force=True)


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines"])
def test_a_multi_record_request_is_answered_line_by_line(endpoint, trained, small_data, content_type):
    images = sorted((small_data / "test").glob("*/*.png"))[:150:5]
    lines = [json.dumps({"image": base64.b64encode(p.read_bytes()).decode()}).encode() for p in images]
    bad = {3: b'{"image": "not base64!"}', 11: b"{truncated", 17: json.dumps({"picture": "x"}).encode()}
    for number, text in bad.items():
        lines.insert(number - 1, text)
    response = requests.post(f"{endpoint.url}/invocations", data=b"\n".join(lines) + b"\n",
                             headers={"Content-Type": content_type, "Accept": "application/jsonlines"}, timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/jsonlines")
    answers = [json.loads(text) for text in response.text.split("\n")]
    assert len(answers) == len(lines)
    for number, (answer, text) in enumerate(zip(answers, lines), start=1):
        if number in bad:
            assert answer["status"] == 400 and answer["error"].startswith(f"Line {number}: "), answer
        else:
            expected = support.expected_answer(trained.opt_ml / "model", text, "application/json")
            support.assert_same_predictions(answer["predictions"], expected["predictions"])
    assert "Retry worker" not in endpoint.container.logs().decode(errors="replace")


# How a SplitType=Line transform frames its records: the file's own line ends (CRLF from Windows
# tools, which also start a file with a BOM), a last line with or without its newline, JSON Lines
# under another name, or no ContentType at all (SDK local mode then sends no Content-Type).
@pytest.mark.parametrize("content_type, start, end, last", [
    ("application/jsonlines", b"\xef\xbb\xbf", b"\r\n", b"\r\n"),
    ("application/jsonl", b"", b"\n", b""),
    ("application/json; charset=utf-8", b"\xef\xbb\xbf", b"\n", b"\n"),
    (None, b"", b"\r\n", b""),
])
def test_multi_record_requests_framed_as_senders_frame_them(endpoint, trained, small_data, content_type, start,
                                                             end, last):
    images = sorted((small_data / "test").glob("*/*.png"))[:40:10]
    lines = [json.dumps({"image": base64.b64encode(p.read_bytes()).decode()}).encode() for p in images]
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(f"{endpoint.url}/invocations", data=start + end.join(lines) + last, headers=headers,
                             timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/jsonlines")
    answers = response.text.split("\n")
    assert len(answers) == len(lines), response.text
    for answer, text in zip(answers, lines):
        expected = support.expected_answer(trained.opt_ml / "model", text, "application/json")
        support.assert_same_predictions(json.loads(answer)["predictions"], expected["predictions"])


@pytest.mark.parametrize("first", [b"", b'{"image": "damaged'])
def test_a_multi_record_request_opening_with_a_bad_record_is_still_answered_line_by_line(endpoint, small_data,
                                                                                         first):
    """Under application/json too: one bad first record gets its error line, not a 400 for the batch."""
    images = sorted((small_data / "test").glob("*/*.png"))[:2]
    lines = [first] + [json.dumps({"image": base64.b64encode(p.read_bytes()).decode()}).encode() for p in images]
    response = requests.post(f"{endpoint.url}/invocations", data=b"\n".join(lines) + b"\n",
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text
    answers = [json.loads(text) for text in response.text.split("\n")]
    assert answers[0]["status"] == 400 and answers[0]["error"].startswith("Line 1: ")
    assert [len(answer["predictions"]) for answer in answers[1:]] == [5, 5]
