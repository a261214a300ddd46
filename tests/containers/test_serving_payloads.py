"""Payloads beyond one encoded image: base64 JSON, preprocessed .npy arrays, top-k and Accept per request."""
import base64
import io

import numpy as np
import pytest
import requests
from PIL import Image

from byoc.contract import load_spec
from byoc.preprocessing import eval_transform
from support import assert_same_predictions, post_image

pytestmark = pytest.mark.docker
TOP_K = "X-Amzn-SageMaker-Custom-Attributes"


def first_image(small_data, folder: str):
    return next((small_data / "test" / folder).glob("*.png"))


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_json_with_one_image_answers_as_the_image_itself(endpoint, small_data):
    path = first_image(small_data, "002.Trouser")
    direct = post_image(f"{endpoint.url}/invocations", path).json()
    via_json = requests.post(f"{endpoint.url}/invocations", json={"image": b64(path)}, timeout=30)
    assert via_json.status_code == 200 and via_json.json() == direct


def test_json_with_several_images_answers_a_list_in_their_order(endpoint, small_data):
    paths = [first_image(small_data, folder) for folder in ("002.Trouser", "008.Sneaker", "009.Bag")]
    response = requests.post(f"{endpoint.url}/invocations", json={"images": [b64(p) for p in paths]}, timeout=30)
    assert response.status_code == 200
    assert_same_predictions(response.json()["predictions"],
                            [post_image(f"{endpoint.url}/invocations", p).json()["predictions"] for p in paths])


def test_a_preprocessed_npy_tensor_answers_as_the_image(endpoint, trained, small_data):
    path = first_image(small_data, "010.Ankle_boot")
    spec = load_spec(trained.opt_ml / "model")
    buffer = io.BytesIO()
    np.save(buffer, eval_transform(Image.open(path), spec.preprocessing).numpy())
    response = requests.post(f"{endpoint.url}/invocations", data=buffer.getvalue(),
                             headers={"Content-Type": "application/x-npy"}, timeout=30)
    assert response.status_code == 200
    assert_same_predictions(response.json()["predictions"],
                            post_image(f"{endpoint.url}/invocations", path).json()["predictions"])


@pytest.mark.parametrize("attributes, count", [("top_k=2", 2), ("top_k=1", 1), ("top_k=50", 10)])
def test_top_k_per_request_from_custom_attributes(endpoint, small_data, attributes, count):
    response = post_image(f"{endpoint.url}/invocations", first_image(small_data, "003.Pullover"),
                          {TOP_K: attributes, "Accept": "application/json"})
    assert response.status_code == 200 and len(response.json()["predictions"]) == count
