"""Request bodies -> images or a preprocessed array, by Content-Type.

  image/jpeg, image/png, application/x-image   one encoded image
  application/json                             {"image": "<base64>"} or {"images": ["<base64>", ...]}
  application/x-npy                            a float32 array (3, H, W) or (N, 3, H, W), already
                                               resized and normalised as model.json describes

Every way a body can be wrong raises RequestError with a 4xx status.
"""
import base64
import binascii
import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from byoc.contract import CONTENT_TYPES, JSON_TYPE, NPY_TYPE
from byoc.serving.errors import RequestError

MAX_ITEMS = 64  # images or array rows in one request
# Refuse images whose pixel count would exhaust memory when decoded (decompression bombs).
Image.MAX_IMAGE_PIXELS = 40_000_000


@dataclass
class Payload:
    images: list[Image.Image] | None = None
    array: np.ndarray | None = None  # (N, 3, H, W) float32
    many: bool = False  # the client sent a list: answer a list


def media_type(content_type: str | None) -> str:
    """'image/jpeg; charset=x' -> 'image/jpeg'."""
    return (content_type or "").split(";")[0].strip().lower()


def decode(body: bytes, content_type: str | None, max_bytes: int) -> Payload:
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise RequestError(415, f"Content-Type {kind or '(none)'!r} is not supported; "
                                f"send one of {', '.join(CONTENT_TYPES)}.")
    if not body:
        raise RequestError(400, "The request body is empty.")
    if len(body) > max_bytes:
        raise RequestError(413, f"The body has {len(body)} bytes; at most {max_bytes} are accepted.")
    if kind == JSON_TYPE:
        return _from_json(body)
    if kind == NPY_TYPE:
        return _from_npy(body)
    return Payload(images=[decode_image(body)])


def decode_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now: a truncated file fails here, not in the model
    except Image.DecompressionBombError:
        raise RequestError(400, f"The image is too large; at most {Image.MAX_IMAGE_PIXELS} pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise RequestError(400, "The body could not be decoded as an image.") from None
    return image


def _from_json(body: bytes) -> Payload:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, f"The body is not valid JSON: {error}.") from None
    if isinstance(document, dict) and isinstance(document.get("image"), str):
        encoded, many = [document["image"]], False
    elif isinstance(document, dict) and isinstance(document.get("images"), list) and document["images"]:
        encoded, many = document["images"], True
    else:
        raise RequestError(400, 'Send {"image": "<base64>"} or {"images": ["<base64>", ...]}.')
    if len(encoded) > MAX_ITEMS:
        raise RequestError(400, f"{len(encoded)} images in one request; at most {MAX_ITEMS}.")
    images = []
    for position, text in enumerate(encoded):
        try:
            data = base64.b64decode(text, validate=True) if isinstance(text, str) else None
        except (binascii.Error, ValueError):
            data = None
        if not data:
            raise RequestError(400, f"Image {position} is not a non-empty base64 string.")
        images.append(decode_image(data))
    return Payload(images=images, many=many)


def _from_npy(body: bytes) -> Payload:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)  # object arrays would need unpickling
    except (ValueError, OSError, EOFError) as error:
        raise RequestError(400, f"The body is not a .npy array without objects: {error}.") from None
    if not isinstance(array, np.ndarray) or array.dtype != np.float32:
        raise RequestError(400, f"The array must be float32, not {getattr(array, 'dtype', type(array).__name__)}.")
    many = array.ndim == 4
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or len(array) == 0:
        raise RequestError(400, f"The array must have shape (3, H, W) or (N, 3, H, W), not {array.shape}.")
    if len(array) > MAX_ITEMS:
        raise RequestError(400, f"{len(array)} arrays in one request; at most {MAX_ITEMS}.")
    if not np.isfinite(array).all():
        raise RequestError(400, "The array holds NaN or infinite values.")
    return Payload(array=array, many=many)
