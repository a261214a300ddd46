"""The Lambda handler end to end: a real image fetched over HTTP, boto3's sagemaker-runtime client,
the serving container with a trained model.

The handler runs in-process with ALLOW_PRIVATE_URLS=1 (its images are served
from loopback here) and AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME pointing at
sagemaker_runtime_standin, which maps SageMaker's /endpoints/<name>/invocations
to the container's /invocations as SageMaker's front end does.
"""
import base64
import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

import sagemaker_runtime_standin
from byoc_cloud import endpoint_lambda
from support import start_serving

pytestmark = pytest.mark.docker
ENDPOINT = "byoc-lambda-test"


@pytest.fixture(scope="module")
def endpoint(docker_client, trained):
    served = start_serving(docker_client, trained.opt_ml / "model")
    front = sagemaker_runtime_standin.start(ENDPOINT, served.url)
    yield served.url, f"http://127.0.0.1:{front.server_address[1]}"
    front.shutdown()
    served.container.remove(force=True)


@pytest.fixture(scope="module")
def images(small_data, tmp_path_factory):
    """A local web server with a real Fashion-MNIST PNG, the same image as JPEG, and two non-images."""
    root = tmp_path_factory.mktemp("www")
    png = sorted((small_data / "test").glob("*/*.png"))[0]
    shutil.copy(png, root / "item.png")
    Image.open(png).convert("RGB").save(root / "item.jpg", quality=95)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


@pytest.fixture
def call(endpoint, point_lambda):
    point_lambda(ENDPOINT, endpoint[1], allow_private_urls=True)  # the images come from loopback

    def invoke(event):
        answer = endpoint_lambda.handler(event, None)
        assert answer["headers"]["Content-Type"] == "application/json"
        return answer["statusCode"], json.loads(answer["body"])
    return invoke


def test_url_to_top_k(call, endpoint, images):
    base, root = images
    status, body = call({"url": f"{base}/item.png", "top_k": 3})
    assert status == 200, body
    direct = requests.post(f"{endpoint[0]}/invocations", data=(root / "item.png").read_bytes(),
                           headers={"Content-Type": "image/png"}).json()["predictions"]
    assert body == {"predictions": direct[:3], "endpoint": ENDPOINT}


def test_base64_jpeg_and_api_gateway_event(call, images):
    _, root = images
    data = base64.b64encode((root / "item.jpg").read_bytes()).decode()
    status, body = call({"image_b64": data})
    assert status == 200 and len(body["predictions"]) == 5
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    status, gateway = call({"body": json.dumps({"image_b64": data}), "isBase64Encoded": False})
    assert (status, gateway) == (200, body)


def test_what_is_not_an_image_never_reaches_the_endpoint(call, images):
    base, _ = images
    assert call({"url": f"{base}/notes.txt"}) == (415, {"error": "not a PNG or JPEG image"})
    status, body = call({"url": f"{base}/missing.png"})
    assert status == 400 and "HTTP 404" in body["error"]


def test_the_containers_refusal_comes_back_as_4xx(call, images):
    base, _ = images
    status, body = call({"url": f"{base}/broken.png"})
    assert status == 400 and body["error"].startswith("the model refused the image")
    assert "Traceback" not in body["error"]


def test_unknown_endpoint_is_a_502_without_internals(call, images, monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "no-such-endpoint")
    base, _ = images
    assert call({"url": f"{base}/item.png"}) == (502, {"error": "the endpoint could not be called"})


def test_loopback_urls_are_refused_without_the_switch(call, images, monkeypatch):
    monkeypatch.delenv("ALLOW_PRIVATE_URLS")
    base, _ = images
    status, body = call({"url": f"{base}/item.png"})
    assert status == 403 and "non-public address (127.0.0.1)" in body["error"]
