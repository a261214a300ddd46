"""A corpus of bad requests: each gets a 4xx JSON body without a traceback, and the server keeps serving."""
import io

import numpy as np
import pytest
import requests
from PIL import Image

from support import post_image

pytestmark = pytest.mark.docker
SIX_MIB = 6 * 1024 * 1024  # the default BYOC_MAX_PAYLOAD_MB


def png(size=(28, 28)) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 128).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype == object)
    return buffer.getvalue()


def bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")  # 400 Mpx in about 50 kB
    return buffer.getvalue()


CORPUS = {
    "garbage bytes": (b"\x00\xff garbage " * 50, {"Content-Type": "image/jpeg"}, 400),
    "truncated jpeg": (jpeg()[:400], {"Content-Type": "image/jpeg"}, 400),
    "decompression bomb": (bomb(), {"Content-Type": "image/png"}, 413),
    "body over the payload limit": (b"\x89PNG" + b"\0" * SIX_MIB, {"Content-Type": "image/png"}, 413),
    "empty body": (b"", {"Content-Type": "image/png"}, 400),
    "wrong content type": (png(), {"Content-Type": "text/plain"}, 415),
    "missing content type, not an image": (b"GIF89a" + b"\0" * 20, {}, 400),
    "malformed json": (b'{"image": ', {"Content-Type": "application/json"}, 400),
    "json without an image": (b'{"url": "http://example.com/x.png"}', {"Content-Type": "application/json"}, 400),
    "json with bad base64": (b'{"image": "not base64!"}', {"Content-Type": "application/json"}, 400),
    "npy of the wrong shape": (npy(np.zeros((3, 64, 64), np.float32)), {"Content-Type": "application/x-npy"}, 400),
    "npy of the wrong dtype": (npy(np.zeros((3, 28, 28), np.int64)), {"Content-Type": "application/x-npy"}, 400),
    "npy holding pickled objects": (npy(np.array([print], dtype=object)), {"Content-Type": "application/x-npy"}, 400),
    "bad top_k": (png(), {"Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes": "top_k=-3"}, 400),
    "accept without json": (png(), {"Content-Type": "image/png", "Accept": "text/csv"}, 406),
}


@pytest.mark.parametrize("case", CORPUS)
def test_bad_request_gets_a_json_4xx_without_traceback(endpoint, case):
    body, headers, status = CORPUS[case]
    response = requests.post(f"{endpoint.url}/invocations", data=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] and "Traceback" not in response.text


def test_the_server_still_answers_after_the_corpus(endpoint, small_data):
    for case in CORPUS.values():  # all of it once more, back to back
        requests.post(f"{endpoint.url}/invocations", data=case[0], headers=case[1], timeout=60)
    assert requests.get(f"{endpoint.url}/ping", timeout=5).status_code == 200
    image = next((small_data / "test" / "009.Bag").glob("*.png"))
    assert post_image(f"{endpoint.url}/invocations", image).status_code == 200
    assert "Traceback" not in endpoint.container.logs(tail=200).decode(errors="replace")
