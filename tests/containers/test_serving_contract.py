"""`serve` honours SageMaker's inference contract."""
import io
import json
import socket
import time

import pytest
import requests
from PIL import Image

from support import start_serving

pytestmark = pytest.mark.docker


def as_bytes(path, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, fmt)
    return buffer.getvalue()


def test_ping(endpoint):
    assert requests.get(f"{endpoint.url}/ping", timeout=5).status_code == 200


@pytest.mark.parametrize("path", ["/ping", "/execution-parameters"])
def test_head_answers_as_get_without_a_body(endpoint, path):
    head = requests.head(f"{endpoint.url}{path}", timeout=5)
    get = requests.get(f"{endpoint.url}{path}", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content))


def exchange(url: str, request: bytes) -> bytes:
    """Send a raw request and read until the server closes the connection (at most 10 s)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("request_head", [
    b"GET /ping HTTP/1.0\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST /invocations HTTP/1.0\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n\r\n",
])
def test_a_client_that_asks_to_close_gets_its_answer_and_the_close(endpoint, small_data, request_head):
    """HTTP/1.0 without keep-alive (ab, old wget) and Connection: close read the answer to the end of
    the connection: the server must close it after the answer, not hold it open."""
    png = next((small_data / "test" / "002.Trouser").glob("*.png")).read_bytes()
    body = png if b"POST" in request_head else b""
    started = time.monotonic()
    answer = exchange(endpoint.url, request_head.replace(b"{length}", str(len(body)).encode()) + body)
    assert time.monotonic() - started < 5, "the connection was held open after the answer"
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower(), head
    assert json.loads(content)


@pytest.mark.parametrize("content_type, fmt", [("image/png", "PNG"), ("image/jpeg", "JPEG"),
                                               ("application/x-image", "PNG")])
def test_invocations_answer_top5_json(endpoint, small_data, content_type, fmt):
    image = next((small_data / "test" / "002.Trouser").glob("*.png"))
    response = requests.post(f"{endpoint.url}/invocations", data=as_bytes(image, fmt),
                             headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    predictions = response.json()["predictions"]
    assert len(predictions) == 5 and set(predictions[0]) == {"label", "probability"}
    assert predictions[0]["probability"] >= predictions[-1]["probability"]


def test_real_test_images_are_classified_correctly_for_a_clear_majority(endpoint, small_data):
    images = sorted((small_data / "test").glob("*/*.png"))[::3]  # 10 per class
    correct = 0
    for path in images:
        response = requests.post(f"{endpoint.url}/invocations", data=path.read_bytes(),
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert response.status_code == 200
        correct += response.json()["predictions"][0]["label"] == path.parent.name[4:].replace("_", " ")
    assert correct / len(images) > 0.7, f"{correct}/{len(images)} correct"


def test_bind_to_port_and_no_command(docker_client, trained, small_data):
    """SAGEMAKER_BIND_TO_PORT moves the server; with no command the image serves."""
    endpoint = start_serving(docker_client, trained.opt_ml / "model", command=None,
                             environment={"SAGEMAKER_BIND_TO_PORT": "9091"}, container_port=9091)
    try:
        image = next((small_data / "test" / "008.Sneaker").glob("*.png"))
        response = requests.post(f"{endpoint.url}/invocations", data=image.read_bytes(),
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert response.status_code == 200
    finally:
        endpoint.container.remove(force=True)


def test_serve_without_a_model_exits_with_a_reason(docker_client, tmp_path):
    container = start_serving(docker_client, tmp_path, ready=False).container
    try:
        assert container.wait(timeout=60)["StatusCode"] != 0
        assert "model.json is missing" in container.logs().decode()
    finally:
        container.remove(force=True)
