"""Payloads beyond one encoded image: base64 JSON, preprocessed .npy arrays, top-k and Accept per request,
and requests as SageMaker's services and SDKs really form them."""
import base64
import io
import json

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


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


BOM = b"\xef\xbb\xbf"
JSON_LINE = {"Content-Type": "application/json"}
# What senders send for one image, each answered as that PNG sent as image/png: (body from the PNG
# and its preprocessed float32 array, headers). From the SDK v2 serializers (NumpySerializer saves
# np.array(data): float64 from a list), local mode (no Content-Type when a transform names none),
# S3/boto3 (binary/octet-stream for an object uploaded without a type), Windows tools (a BOM).
AS_SENT = {
    "no Content-Type (transform or async without ContentType)": (lambda png, a: png, {}),
    "application/octet-stream": (lambda png, a: png, {"Content-Type": "application/octet-stream"}),
    "binary/octet-stream (an S3 object uploaded without a type)": (lambda png, a: png,
                                                                   {"Content-Type": "binary/octet-stream"}),
    "file-path/raw-bytes (the SDK's DataSerializer, SDK v3 ModelBuilder's ping)": (
        lambda png, a: png, {"Content-Type": "file-path/raw-bytes"}),
    "a JSON record without a Content-Type": (lambda png, a: json.dumps({"image": base64.b64encode(png).decode()})
                                             .encode() + b"\n", {}),
    "JSON with charset, upper case": (lambda png, a: json.dumps({"image": base64.b64encode(png).decode()}).encode(),
                                      {"Content-Type": "Application/JSON; charset=UTF-8"}),
    "JSON after a UTF-8 BOM, CRLF": (lambda png, a: BOM + json.dumps({"image": base64.b64encode(png).decode()})
                                     .encode() + b"\r\n", JSON_LINE),
    "npy float64 from a list (NumpySerializer)": (lambda png, a: npy_bytes(np.array(a.tolist())),
                                                  {"Content-Type": "application/x-npy"}),
    "npy big-endian float32": (lambda png, a: npy_bytes(a.astype(">f4")), {"Content-Type": "application/x-npy"}),
    "npy Fortran order float64": (lambda png, a: npy_bytes(np.asfortranarray(a.astype(np.float64))),
                                  {"Content-Type": "application/x-npy"}),
    "Accept: application/json, */*": (lambda png, a: png, {"Content-Type": "image/png",
                                                            "Accept": "application/json, */*"}),
    "Accept: */*, custom attributes of 1024 characters, SageMaker's headers": (lambda png, a: png, {
        "Content-Type": "image/png", "Accept": "*/*", TOP_K: "trace=" + "x" * 1018,
        "X-Amzn-SageMaker-Inference-Id": "c000b4f9-df62-4c85-a0bf-7c525f9104a4",
        "X-Amzn-SageMaker-Enable-Explanations": "`true`", "X-Amzn-SageMaker-Target-Model": "a/b/model.tar.gz"}),
}


@pytest.mark.parametrize("name", AS_SENT)
def test_one_image_as_senders_send_it_answers_as_the_image(endpoint, trained, small_data, name):
    path = first_image(small_data, "008.Sneaker")
    array = eval_transform(Image.open(path), load_spec(trained.opt_ml / "model").preprocessing).numpy()
    make_body, headers = AS_SENT[name]
    response = requests.post(f"{endpoint.url}/invocations", data=make_body(path.read_bytes(), array),
                             headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert_same_predictions(response.json()["predictions"],
                            post_image(f"{endpoint.url}/invocations", path).json()["predictions"])


@pytest.mark.parametrize("body, headers, status, says", [
    (b"1,2,3\n", {"Content-Type": "text/csv"}, 415, "'text/csv' is not supported; send one of image/jpeg"),
    (b"GIF89a" + b"\0" * 20, {}, 400, "sent with no Content-Type, so read as an image) is not a JPEG or PNG"),
    (npy_bytes(np.zeros((28, 28, 3), np.uint8)), {"Content-Type": "application/x-npy"}, 400, "send the image itself"),
    (b"\x89PNG", {"Content-Type": "image/png", "Accept": "application/x-npy"}, 406, "cannot be met"),
])
def test_what_senders_send_that_the_kit_does_not_serve_is_refused_precisely(endpoint, body, headers, status, says):
    response = requests.post(f"{endpoint.url}/invocations", data=body, headers=headers, timeout=30)
    assert response.status_code == status and says in response.json()["error"], response.text


# How clients upload one image file (each a 415 before): Python's requests with files= (its part
# names no type), curl -F with a file name it cannot place (application/octet-stream), and the
# old or informal names of the image types.
UPLOADS = {
    "requests.post(files={'image': data})": lambda path: {"files": {"image": path.read_bytes()}},
    "a form part of application/octet-stream": lambda path: {
        "files": {"image": ("photo", path.read_bytes(), "application/octet-stream")}},
    "Content-Type: image/x-png": lambda path: {"data": path.read_bytes(), "headers": {"Content-Type": "image/x-png"}},
}


@pytest.mark.parametrize("name", UPLOADS)
def test_an_image_file_as_clients_upload_it_answers_as_the_image(endpoint, small_data, name):
    path = first_image(small_data, "008.Sneaker")
    response = requests.post(f"{endpoint.url}/invocations", timeout=30, **UPLOADS[name](path))
    assert response.status_code == 200, response.text
    assert_same_predictions(response.json()["predictions"],
                            post_image(f"{endpoint.url}/invocations", path).json()["predictions"])
