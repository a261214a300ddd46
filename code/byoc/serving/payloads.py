"""Request bodies -> images (headers checked, pixels not yet decoded) or a preprocessed array,
by Content-Type, and only the formats it names:

  image/jpeg, image/png            one image of that format
  application/x-image              one JPEG or PNG image
  multipart/form-data              one part holding a JPEG or PNG image, of its own Content-Type
                                   (what `curl -F image=@dog.jpg` sends), or of none or
                                   application/octet-stream (requests' files=): JPEG or PNG
  application/json                 {"image": "<base64>"} or {"images": ["<base64>", ...]}: JPEG or PNG
  application/jsonlines            one such object per line, each answered on its own line
                                   (byoc.serving.json_lines); so is an application/json body of
                                   several lines whose first line is a whole JSON value (batch
                                   transform's MultiRecord requests over SplitType=Line input)
  application/x-npy                a float array (3, H, W) or (N, 3, H, W), already resized and
                                   normalised as model.json describes (byoc.serving.arrays)
  (none, or application/octet-stream)  JSON if the body opens with '{', else one JPEG or PNG image
                                   (contract.UNTYPED says who sends these)

Every way a body can be wrong raises RequestError: 415 for a content type not listed above, 413
over a limit (settings.Limits, each named), 400 otherwise.
"""
import email.parser
import email.policy
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from byoc.contract import (CONTENT_TYPE_ALIASES, CONTENT_TYPES, CUSTOM_ATTRIBUTES_HEADER, IMAGE_TYPES, JSON_LINES_TYPE,
                           JSON_TYPE, MULTIPART_TYPE, NPY_TYPE, UNTYPED, base64_bytes, top_k_attribute)
from byoc.serving import arrays, images
from byoc.serving.errors import RequestError
from byoc.serving.json_bodies import strict_json
from byoc.serving.settings import Limits

BOUNDARY = re.compile(r'boundary="?([^";]+)', re.IGNORECASE)
JSON_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*\{")  # (a byte order mark,) white space, an object
FORMATS = {"image/jpeg": ("JPEG",), "image/png": ("PNG",), "application/x-image": ("JPEG", "PNG")}
ANY_IMAGE = ("JPEG", "PNG")


@dataclass
class Payload:
    images: list[tuple[str, Image.Image]] | None = None  # (name for messages, opened image)
    array: np.ndarray | None = None  # (N, 3, H, W) float32
    many: bool = False  # the client sent a list: answer a list
    lines: list[bytes] | None = None  # JSON Lines: each line a body of its own, not yet read


def media_type(content_type: str | None) -> str:
    """'image/jpeg; charset=x' -> 'image/jpeg'; 'application/jsonl' -> 'application/jsonlines'."""
    kind = (content_type or "").split(";")[0].strip().lower()
    return CONTENT_TYPE_ALIASES.get(kind, kind)


def _implied(body: bytes) -> str:
    """The type of a body sent without one: JSON (one value or JSON Lines) if it opens with '{'
    (after a UTF-8 byte order mark and white space), else an image, whose own signature then
    picks JPEG or PNG (no other decoder is tried)."""
    return JSON_TYPE if JSON_START.match(body) else "application/x-image"


def unsupported(kind: str) -> RequestError:
    hint = (" (curl --data-binary sends this unless told otherwise: add -H 'Content-Type: image/jpeg')"
            if kind == "application/x-www-form-urlencoded" else "")
    return RequestError(415, f"Content-Type {kind or '(none)'!r} is not supported{hint}; "
                             f"send one of {', '.join(CONTENT_TYPES)}.")


def decode(body: bytes, content_type: str | None, limits: Limits) -> Payload:
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES and kind not in UNTYPED:
        raise unsupported(kind)
    if not body:
        raise RequestError(400, "The request body is empty.")
    name = "The image"
    if kind in UNTYPED:
        name = f"The body (sent with {f'Content-Type {kind!r}' if kind else 'no Content-Type'}, so read as an image)"
        kind = _implied(body)
    if len(body) > limits.max_payload_bytes:
        raise RequestError(413, f"The body has {len(body)} bytes; at most {limits.max_payload_bytes} are "
                                "accepted (BYOC_MAX_PAYLOAD_MB).")
    if kind == JSON_LINES_TYPE:
        return Payload(lines=json_lines(body))
    if kind == JSON_TYPE:
        try:
            return _from_json(body, limits)
        except RequestError as error:
            if error.status == 400 and _several_json_lines(body):
                return Payload(lines=json_lines(body))
            raise
    if kind == NPY_TYPE:
        array, many = arrays.from_npy(body, limits)
        return Payload(array=array, many=many)
    if kind == MULTIPART_TYPE:
        body, kind = _from_multipart(body, content_type or "")
    return _checked_images([images.open_checked(body, FORMATS[kind], limits, name)], [name], False, limits)


def _checked_images(opened: list[Image.Image], names: list[str], many: bool, limits: Limits) -> Payload:
    total = sum(image.width * image.height for image in opened)
    if total > limits.max_request_pixels:
        raise RequestError(413, f"The images hold {total:,} pixels; at most {limits.max_request_pixels:,} per "
                                "request (BYOC_MAX_REQUEST_PIXELS).")
    return Payload(images=list(zip(names, opened)), many=many)


def _from_json(body: bytes, limits: Limits) -> Payload:
    document = strict_json(body)
    shape = 'Send {"image": "<base64>"} or {"images": ["<base64>", ...]}'
    if not isinstance(document, dict) or len(document) != 1:
        hint = (f" (top_k goes in InvokeEndpoint's CustomAttributes, the {CUSTOM_ATTRIBUTES_HEADER} header: "
                f"{top_k_attribute(3)})" if isinstance(document, dict) and "top_k" in document else "")
        raise RequestError(400, f"{shape}: an object with one of those keys and nothing else{hint}.")
    if isinstance(document.get("image"), str):
        encoded, many = [document["image"]], False
    elif isinstance(document.get("images"), list) and document["images"]:
        encoded, many = document["images"], True
    else:
        raise RequestError(400, f"{shape}: 'image' a base64 string, 'images' a non-empty list of them.")
    if len(encoded) > limits.max_images:
        raise RequestError(413, f"{len(encoded)} images in one request; at most {limits.max_images} "
                                "(BYOC_MAX_IMAGES).")
    names = [f"Image {i}" if many else "The image" for i in range(len(encoded))]
    opened = [images.open_checked(_base64(text, name), ANY_IMAGE, limits, name) for text, name in zip(encoded, names)]
    return _checked_images(opened, names, many, limits)


def json_lines(body: bytes) -> list[bytes]:
    """The lines of a JSON Lines body (a final newline ends the last line; it does not start one)."""
    return [line.rstrip(b"\r") for line in body.rstrip(b"\r\n").split(b"\n")]


def _several_json_lines(body: bytes) -> bool:
    """An application/json body that is not one JSON value but lines of them (MultiRecord): some
    line is a JSON object by itself (not only the first: a transform's file may open with a blank
    or damaged record, and each record is then answered on its own line, as under JSON Lines)."""
    lines = json_lines(body)
    return len(lines) >= 2 and any(_is_object(line) for line in lines)


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(strict_json(line), dict)
    except RequestError:
        return False


def _base64(text, name: str) -> bytes:
    if not isinstance(text, str):
        raise RequestError(400, f"{name} is not a base64 string.")
    try:
        data = base64_bytes(text)
    except ValueError as error:
        raise RequestError(400, f"{name} {error}.") from None
    if not data:
        raise RequestError(400, f"{name} is empty.")
    return data


def _from_multipart(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The one part of a multipart/form-data body, and its own image type."""
    boundary = BOUNDARY.search(content_type)
    if not boundary:
        raise RequestError(400, "multipart/form-data needs a boundary parameter in its Content-Type.")
    # One part is all this takes: more delimiter lines than its opening and closing ones are refused
    # before the email parser, which takes a minute over a million empty parts.
    delimiter = b"--" + boundary.group(1).encode("latin-1", "replace")
    if (delimiters := body.count(b"\n" + delimiter) + body.startswith(delimiter)) > 2:
        raise RequestError(400, f"The multipart/form-data body has {delimiters - 1} parts; send exactly one, "
                                "the image (curl -F image=@dog.jpg).")
    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        declared = parts[0].get("Content-Type") if parts else None
    except RecursionError:  # the email package recurses over nested comments and parts
        raise RequestError(400, "The multipart/form-data headers or parts are nested too deeply.") from None
    if message.defects or not parts:
        raise RequestError(400, "The multipart/form-data body is malformed (no parts, or no closing boundary).")
    if len(parts) != 1:
        raise RequestError(400, f"The multipart/form-data body has {len(parts)} parts; send exactly one, the "
                                "image (curl -F image=@dog.jpg).")
    # A part of no type is what Python's requests sends for files={"image": f}, and curl says
    # application/octet-stream for a file name it cannot place: the image's signature decides.
    kind = media_type(None if declared is None else str(declared))
    if kind in UNTYPED:
        kind = "application/x-image"
    if kind not in IMAGE_TYPES:
        raise RequestError(415, f"The multipart part's Content-Type is {kind!r}; send {', '.join(IMAGE_TYPES)} "
                                "(curl -F 'image=@dog.jpg;type=image/jpeg').")
    data = parts[0].get_payload(decode=True)
    if not data:
        raise RequestError(400, "The multipart part holding the image is empty.")
    return data, kind
