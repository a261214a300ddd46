import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from byoc.serving import payloads
from byoc.serving.errors import RequestError

LIMIT = 1 << 20


def encoded(fmt: str, size=(28, 28)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype == object)
    return buffer.getvalue()


@pytest.mark.parametrize("content_type, fmt", [("image/jpeg", "JPEG"), ("image/png", "PNG"),
                                               ("application/x-image", "PNG"), ("image/png; charset=x", "PNG")])
def test_encoded_images_decode(content_type, fmt):
    payload = payloads.decode(encoded(fmt), content_type, LIMIT)
    assert len(payload.images) == 1 and payload.images[0].size == (28, 28) and not payload.many


def test_json_carries_one_or_several_base64_images():
    one = payloads.decode(json.dumps({"image": base64.b64encode(encoded("PNG")).decode()}).encode(),
                          "application/json", LIMIT)
    several = payloads.decode(json.dumps({"images": [base64.b64encode(encoded("JPEG")).decode()] * 3}).encode(),
                              "application/json", LIMIT)
    assert (len(one.images), one.many) == (1, False) and (len(several.images), several.many) == (3, True)


def test_npy_carries_one_array_or_a_batch():
    one = payloads.decode(npy(np.zeros((3, 8, 8), np.float32)), "application/x-npy", LIMIT)
    batch = payloads.decode(npy(np.zeros((4, 3, 8, 8), np.float32)), "application/x-npy", LIMIT)
    assert one.array.shape == (1, 3, 8, 8) and not one.many
    assert batch.array.shape == (4, 3, 8, 8) and batch.many


def bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")  # 100 Mpx in a few kB
    return buffer.getvalue()


@pytest.mark.parametrize(
    "body, content_type, status, says",
    [
        (b"abc", "text/plain", 415, "'text/plain' is not supported"),
        (b"abc", None, 415, "'(none)' is not supported"),
        (b"", "image/png", 400, "empty"),
        (b"x" * (LIMIT + 1), "image/png", 413, "at most"),
        (b"\x00garbage\xff" * 10, "image/jpeg", 400, "could not be decoded"),
        (encoded("JPEG", (64, 64))[:200], "image/jpeg", 400, "could not be decoded"),
        (bomb(), "image/png", 400, "too large"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"pictures": []}', "application/json", 400, 'Send {"image"'),
        (b'{"images": []}', "application/json", 400, 'Send {"image"'),
        (b'{"image": "***"}', "application/json", 400, "not a non-empty base64"),
        (json.dumps({"images": ["aGVsbG8="] * 65}).encode(), "application/json", 400, "at most 64"),
        (json.dumps({"image": base64.b64encode(b"hello").decode()}).encode(), "application/json", 400,
         "could not be decoded"),
        (b"\x93NUMPY garbage", "application/x-npy", 400, "not a .npy array"),
        (npy(np.array([{"a": 1}], dtype=object)), "application/x-npy", 400, "not a .npy array"),
        (npy(np.zeros((3, 8, 8), np.int64)), "application/x-npy", 400, "must be float32"),
        (npy(np.zeros((8, 8), np.float32)), "application/x-npy", 400, "shape (3, H, W)"),
        (npy(np.zeros((0, 3, 8, 8), np.float32)), "application/x-npy", 400, "shape (3, H, W)"),
        (npy(np.full((3, 8, 8), np.nan, np.float32)), "application/x-npy", 400, "NaN"),
    ],
)
def test_bad_bodies_are_client_errors(body, content_type, status, says):
    with pytest.raises(RequestError) as error:
        payloads.decode(body, content_type, LIMIT)
    assert error.value.status == status and says in error.value.message
