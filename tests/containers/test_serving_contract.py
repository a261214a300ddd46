"""`serve` honours SageMaker's inference contract."""
import io

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
