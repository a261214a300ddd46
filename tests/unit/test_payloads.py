import base64
import dataclasses
import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from byoc.contract import Preprocessing
from byoc.serving import images, payloads
from byoc.serving.errors import RequestError
from byoc.serving.settings import Limits

LIMITS = Limits(max_payload_bytes=1 << 20, max_image_pixels=1_000_000, max_request_pixels=2_000_000,
                max_aspect_ratio=20, max_images=8)
PREP = Preprocessing(32, 28)


def encoded(fmt: str, size=(28, 28), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype == object)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def multipart(parts: list[tuple[str, bytes]], boundary="XyZ") -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x\"\r\n"
                    f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n" for kind, data in parts)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png_header(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose header declares width x height, with no pixel data to speak of."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + extra
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def decoded(payload) -> list:
    return [images.decode(image, PREP, name) for name, image in payload.images]


@pytest.mark.parametrize("content_type, fmt", [("image/jpeg", "JPEG"), ("image/png", "PNG"),
                                               ("application/x-image", "PNG"), ("application/x-image", "JPEG"),
                                               ("IMAGE/PNG; charset=x", "PNG")])
def test_encoded_images_decode(content_type, fmt):
    payload = payloads.decode(encoded(fmt), content_type, LIMITS)
    assert len(payload.images) == 1 and not payload.many
    assert decoded(payload)[0].shape == (3, 28, 28)


def test_json_carries_one_or_several_base64_images():
    one = payloads.decode(json.dumps({"image": b64(encoded("PNG"))}).encode(), "application/json", LIMITS)
    several = payloads.decode(json.dumps({"images": [b64(encoded("JPEG"))] * 3}).encode(), "application/json",
                              LIMITS)
    assert (len(one.images), one.many) == (1, False) and (len(several.images), several.many) == (3, True)


def test_a_multipart_upload_of_one_image_is_that_image():
    png = encoded("PNG")
    body, content_type = multipart([("image/png", png)])
    via_form = decoded(payloads.decode(body, content_type, LIMITS))[0]
    direct = decoded(payloads.decode(png, "image/png", LIMITS))[0]
    assert via_form.equal(direct)  # the part's bytes, exactly (binary, CR and LF included)


def test_npy_carries_one_array_or_a_batch():
    one = payloads.decode(npy(np.zeros((3, 8, 8), np.float32)), "application/x-npy", LIMITS)
    batch = payloads.decode(npy(np.zeros((4, 3, 8, 8), np.float32)), "application/x-npy", LIMITS)
    assert one.array.shape == (1, 3, 8, 8) and not one.many
    assert batch.array.shape == (4, 3, 8, 8) and batch.many


def test_npy_values_up_to_ten_thousand_either_way_are_answered():
    """Far beyond any normalised image (about ±3), still not refused: the bound is for nonsense only."""
    edges = np.full((2, 3, 8, 8), 1e4, np.float32) * np.array([1, -1], np.float32)[:, None, None, None]
    assert payloads.decode(npy(edges), "application/x-npy", LIMITS).array.shape == (2, 3, 8, 8)


# As senders write them: the SDK's NumpySerializer saves np.array(data) (float64 from a list or a
# tensor's .tolist()), in whatever order and byte order the array has.
SENT_ARRAYS = {
    "float64 from a list": lambda a: np.array(a.tolist()),
    "float16": lambda a: a.astype(np.float16),
    "big-endian float32": lambda a: a.astype(">f4"),
    "big-endian float64": lambda a: a.astype(">f8"),
    "Fortran order": np.asfortranarray,
    "Fortran order float64": lambda a: np.asfortranarray(a.astype(np.float64)),
    "a strided view": lambda a: np.concatenate([a, a], axis=-1)[..., ::2],
}


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("how", SENT_ARRAYS)
def test_npy_arrays_as_senders_write_them_are_the_same_float32_array(how, batch):
    array = np.random.default_rng(1).standard_normal((2, 3, 8, 8) if batch else (3, 8, 8)).astype(np.float32)
    sent = SENT_ARRAYS[how](array)
    payload = payloads.decode(npy(sent), "application/x-npy", LIMITS)
    assert payload.array.dtype == np.float32 and payload.many == batch
    expected = np.asarray(sent, np.float32)
    assert np.array_equal(payload.array, expected if batch else expected[None])


UNTYPED = [None, "", "application/octet-stream", "binary/octet-stream", "Application/Octet-Stream; x=1",
           "file-path/raw-bytes"]  # the SageMaker SDK's DataSerializer


@pytest.mark.parametrize("content_type", UNTYPED)
def test_a_body_sent_without_a_type_is_an_image_or_json_by_its_first_bytes(content_type):
    png, jpeg = encoded("PNG"), encoded("JPEG")
    for image, fmt in ((png, "PNG"), (jpeg, "JPEG")):
        payload = payloads.decode(image, content_type, LIMITS)
        assert payload.images[0][1].format == fmt
    line = json.dumps({"image": b64(png)}).encode()
    assert len(payloads.decode(b"\xef\xbb\xbf \n" + line, content_type, LIMITS).images) == 1
    assert payloads.decode(line + b"\n" + line + b"\n", content_type, LIMITS).lines == [line, line]


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/jsonlines", "application/jsonl", "Application/X-JSONLines"])
def test_json_and_json_lines_as_senders_label_and_frame_them(content_type):
    """A byte order mark at the payload's start (Windows tools write one), CRLF line ends, a final
    newline or none, and JSON Lines under the other names senders use."""
    line = json.dumps({"image": b64(encoded("PNG"))}).encode()
    for body in (BOM + line, BOM + line + b"\r\n", line + b"\n"):
        payload = payloads.decode(body, content_type, LIMITS)
        assert (payload.lines or [None]) != [] and (payload.images or payload.lines)
    several = payloads.decode(BOM + line + b"\r\n" + line + b"\r\n", content_type, LIMITS)
    assert several.lines == [BOM + line, line]
    assert len(payloads.decode(several.lines[0], "application/json", LIMITS).images) == 1


def npy_claiming(shape, data=b"") -> bytes:
    """A .npy header that declares `shape` of float32, followed by `data` only."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def deep_json(depth: int) -> bytes:
    return b'{"images": ' + b"[" * depth + b"]" * depth + b"}"


BAD = [
    (b"abc", "text/plain", 415, "'text/plain' is not supported"),
    (b"abc", None, 400, "sent with no Content-Type, so read as an image) is not a JPEG or PNG image"),
    (encoded("GIF"), "binary/octet-stream", 400, "'binary/octet-stream', so read as an image) is not a JPEG or PNG"),
    (b"{not json", None, 400, "not valid JSON"),
    (b"abc", "application/jsonlinesx", 415, "'application/jsonlinesx' is not supported"),
    (b"a=1&b=%zz", "application/x-www-form-urlencoded", 415, "curl --data-binary"),
    (b"", "image/png", 400, "empty"),
    (b"x" * ((1 << 20) + 1), "image/png", 413, "BYOC_MAX_PAYLOAD_MB"),
    (b"\x00garbage\xff" * 10, "image/jpeg", 400, "not a JPEG image"),
    (encoded("PNG"), "image/jpeg", 400, "not a JPEG image (it looks like PNG)"),
    (encoded("JPEG"), "image/png", 400, "not a PNG image (it looks like JPEG)"),
    (encoded("GIF"), "application/x-image", 400, "not a JPEG or PNG image (it looks like GIF)"),
    (encoded("TIFF"), "image/png", 400, "looks like TIFF"),
    (encoded("BMP"), "image/png", 400, "looks like BMP"),
    (encoded("WEBP"), "image/png", 400, "looks like WebP"),
    (encoded("ICO", (32, 32)), "image/png", 400, "looks like ICO"),
    (png_header(1001, 1000), "image/png", 413, "1,001,000 pixels; at most 1,000,000"),
    (png_header(1, 1000), "image/png", 400, "aspect ratio of 1000.0:1"),
    (png_header(0, 10), "image/png", 400, "damaged PNG header"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"image": "a", "image": "b"}', "application/json", 400, "duplicate key 'image'"),
    (b'{"images": [NaN]}', "application/json", 400, "NaN is not JSON"),
    (b'{"images": [' + b"9" * 5000 + b"]}", "application/json", 400, "not valid JSON"),
    (deep_json(100_000), "application/json", 400, "nested too deeply"),
    (b'{"pictures": []}', "application/json", 400, 'Send {"image"'),
    (b'{"images": []}', "application/json", 400, 'Send {"image"'),
    (json.dumps({"image": "aGk=", "top_k": 3}).encode(), "application/json", 400, "nothing else"),
    (b'{"image": "***"}', "application/json", 400, "The image is not base64 (A-Z a-z 0-9 + / or the URL-safe"),
    (b'{"image": ""}', "application/json", 400, "The image is empty"),
    (b'{"image": "AA==", "top_k": 3}', "application/json", 400,
     "top_k goes in InvokeEndpoint's CustomAttributes, the X-Amzn-SageMaker-Custom-Attributes header: top_k=3"),
    (b'{"image": "data:image/png,abc"}', "application/json", 400, "a data: URL that is not base64"),
    (b'{"image": "ab+c-d"}', "application/json", 400, "is not base64"),  # both alphabets at once
    (json.dumps({"images": ["aGVsbG8="] * 9}).encode(), "application/json", 413, "at most 8 (BYOC_MAX_IMAGES)"),
    (json.dumps({"images": [b64(png_header(1000, 1000))] * 3}).encode(), "application/json", 413,
     "3,000,000 pixels; at most 2,000,000 per request"),
    (json.dumps({"image": b64(b"hello")}).encode(), "application/json", 400, "not a JPEG or PNG"),
    (b"\x93NUMPY garbage", "application/x-npy", 400, "not a .npy array"),
    (npy(np.array([{"a": 1}], dtype=object)), "application/x-npy", 400, "Python objects"),
    (npy(np.zeros((3, 8, 8), np.int64)), "application/x-npy", 400, "must hold floats"),
    (npy(np.zeros((8, 8, 3), np.uint8)), "application/x-npy", 400, "send the image itself"),
    (npy(np.zeros((3, 8, 8), np.complex64)), "application/x-npy", 400, "must hold floats"),
    (npy(np.full((3, 8, 8), 1e300)), "application/x-npy", 400, "NaN or infinite"),
    (npy(np.full((3, 8, 8), 2e4, np.float32)), "application/x-npy", 400, "beyond ±10000"),
    (npy(np.full((2, 3, 8, 8), -1e4, np.float32) * np.array([1, 1.001], np.float32)[:, None, None, None]),
     "application/x-npy", 400, "beyond ±10000"),  # one value of one row is enough
    (npy(np.full((3, 8, 8), 65504, np.float16)), "application/x-npy", 400, "beyond ±10000"),
    (npy(np.zeros((8, 8), np.float32)), "application/x-npy", 400, "shape (3, H, W)"),
    (npy(np.zeros((0, 3, 8, 8), np.float32)), "application/x-npy", 400, "shape (3, H, W)"),
    (npy(np.full((3, 8, 8), np.nan, np.float32)), "application/x-npy", 400, "NaN"),
    (npy_claiming((4, 3, 100000, 100000)), "application/x-npy", 413, "BYOC_MAX_REQUEST_PIXELS"),
    (npy_claiming((9, 3, 8, 8)), "application/x-npy", 413, "at most 8"),
    (npy_claiming((2, 3, 8, 8), b"\0" * 16), "application/x-npy", 400, "declares (2, 3, 8, 8)"),
    (b"--X\r\n\r\n", "multipart/form-data", 400, "needs a boundary"),
    (b"no parts here", "multipart/form-data; boundary=X", 400, "malformed"),
    (*multipart([("image/png", encoded("PNG"))] * 2), 400, "has 2 parts"),
    (*multipart([("text/plain", encoded("PNG"))]), 415, "'text/plain'"),
    (*multipart([("image/png", encoded("JPEG"))]), 400, "not a PNG image"),
]


@pytest.mark.parametrize("body, content_type, status, says", BAD)
def test_bad_bodies_are_client_errors_naming_the_problem(body, content_type, status, says):
    with pytest.raises(RequestError) as error:
        payloads.decode(body, content_type, LIMITS)
    assert error.value.status == status and says in error.value.message, error.value.message


def test_an_npy_header_claiming_terabytes_allocates_nothing():
    """np.load would allocate the declared shape first; the check refuses from the header alone."""
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(RequestError):
        payloads.decode(npy_claiming((64, 3, 100000, 100000)), "application/x-npy", LIMITS)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


@pytest.mark.parametrize("damage", ["truncated", "bad data"])
def test_images_whose_pixels_are_damaged_fail_when_decoded_as_400(damage):
    data = encoded("JPEG", (64, 64))
    data = data[:300] if damage == "truncated" else data[:400] + b"\xff\xd9" + data[402:]
    try:
        payload = payloads.decode(data, "image/jpeg", LIMITS)
        decoded(payload)
    except RequestError as error:
        assert error.status == 400
    # Some damage JPEG decoders simply paint over; what matters is no other exception.


def test_images_of_every_mode_become_rgb_crops():
    for mode in ("1", "L", "LA", "P", "RGBA", "I;16"):
        data = encoded("PNG", (40, 30), mode)
        assert decoded(payloads.decode(data, "image/png", LIMITS))[0].shape == (3, 28, 28), mode
    cmyk = encoded("JPEG", (40, 30), "CMYK")
    assert decoded(payloads.decode(cmyk, "image/jpeg", LIMITS))[0].shape == (3, 28, 28)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 32768, np.uint16)).save(buffer, "PNG")
    crop = decoded(payloads.decode(buffer.getvalue(), "image/png", LIMITS))[0]
    expected = (128 / 255 - torch.tensor(PREP.mean)) / torch.tensor(PREP.std)  # 32768 >> 8 = 128
    torch.testing.assert_close(crop, expected.view(3, 1, 1).expand(3, 28, 28), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape", [(3, -28, -28), (-1, 3, -28, 28), (True, 3, 28, 28), (3, 28, False)])
def test_an_npy_shape_of_anything_but_positive_integers_is_400(shape):
    with pytest.raises(RequestError) as error:
        payloads.decode(npy_claiming(shape, b"\0" * 9408), "application/x-npy", LIMITS)
    assert error.value.status == 400 and "must have shape" in error.value.message


def test_multipart_of_many_parts_is_refused_before_the_email_parser_reads_them():
    body = b"--b\r\n\r\n" * 200_000 + b"--b--\r\n"
    with pytest.raises(RequestError) as error:
        payloads.decode(body, "multipart/form-data; boundary=b", dataclasses.replace(LIMITS, max_payload_bytes=8 << 20))
    assert error.value.status == 400 and "200000 parts" in error.value.message


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Type: image/png (" + b"(" * 1000 + b"\r\n\r\nx\r\n--b--\r\n"),
    ("multipart/form-data; boundary=b (" + "(" * 3000, b"x"),
])
def test_multipart_nested_past_pythons_recursion_limit_is_400(content_type, body):
    with pytest.raises(RequestError) as error:
        payloads.decode(body, content_type, LIMITS)
    assert error.value.status == 400


def test_a_jpeg_of_more_scans_than_any_encoder_writes_is_400():
    data = encoded("JPEG", (64, 64))
    scan = data[data.rindex(b"\xff\xda"):-2]
    with pytest.raises(RequestError) as error:
        payloads.decode(data[:-2] + scan * images.MAX_JPEG_SCANS + b"\xff\xd9", "image/jpeg", LIMITS)
    assert error.value.status == 400 and "scans" in error.value.message
    progressive = io.BytesIO()
    Image.open(io.BytesIO(data)).save(progressive, "JPEG", progressive=True)  # about 10 scans
    payloads.decode(progressive.getvalue(), "image/jpeg", LIMITS)


def requests_form(files: dict) -> tuple[bytes, str]:
    """The body and Content-Type Python's requests sends for requests.post(url, files=files)."""
    import requests

    prepared = requests.Request("POST", "http://localhost/invocations", files=files).prepare()
    return prepared.body, prepared.headers["Content-Type"]


FORM_PARTS = {  # what requests' files= takes for one file: the part's file name and type, or none
    "no file name or type": lambda data, fmt: data,
    "no type": lambda data, fmt: ("dog", data),
    "octet-stream": lambda data, fmt: ("dog", data, "application/octet-stream"),
    "an old name of the type": lambda data, fmt: ("dog", data, {"JPEG": "image/jpg", "PNG": "image/x-png"}[fmt]),
}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("part", FORM_PARTS.values(), ids=FORM_PARTS)
def test_form_uploads_as_clients_send_them_are_the_image(fmt, part):
    """requests' files= puts no Content-Type in the part (the email parser then says text/plain),
    curl says application/octet-stream for a file name it cannot place: the signature decides."""
    data = encoded(fmt)
    body, content_type = requests_form({"image": part(data, fmt)})
    via_form = decoded(payloads.decode(body, content_type, LIMITS))[0]
    assert via_form.equal(decoded(payloads.decode(data, "image/" + fmt.lower(), LIMITS))[0])


@pytest.mark.parametrize("alias, fmt", [("image/jpg", "JPEG"), ("image/pjpeg", "JPEG"), ("IMAGE/X-PNG", "PNG"),
                                        ("image/jpg; charset=binary", "JPEG")])
def test_image_types_under_the_names_clients_write(alias, fmt):
    assert decoded(payloads.decode(encoded(fmt), alias, LIMITS))[0].shape == (3, 28, 28)
    with pytest.raises(RequestError, match="not a"):  # still only the format the name says
        payloads.decode(encoded("PNG" if fmt == "JPEG" else "JPEG"), alias, LIMITS)


def test_a_form_part_that_says_it_is_text_is_still_refused():
    body, content_type = requests_form({"image": ("notes.txt", encoded("PNG"), "text/plain")})
    with pytest.raises(RequestError, match="'text/plain'") as refused:
        payloads.decode(body, content_type, LIMITS)
    assert refused.value.status == 415


BASE64_AS_WRITTEN = {  # how clients write an image's base64
    "a browser's data URL (FileReader.readAsDataURL)": lambda data: "data:image/png;base64," + b64(data),
    "a data URL with parameters, upper case": lambda data: "DATA:image/jpeg;name=dog.jpg;BASE64," + b64(data),
    "lines of 76 (the base64 tool, MIME encoders)": lambda data: base64.encodebytes(data).decode(),
    "CRLF lines": lambda data: base64.encodebytes(data).decode().replace("\n", "\r\n"),
    "the URL-safe alphabet": lambda data: base64.urlsafe_b64encode(data).decode(),
    "no padding": lambda data: b64(data).rstrip("="),
}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("written", BASE64_AS_WRITTEN.values(), ids=BASE64_AS_WRITTEN)
def test_base64_as_clients_write_it_is_the_image(fmt, written):
    data = encoded(fmt, size=(64, 48))  # long enough for several lines and for - _ + / to appear
    assert {"+", "/"} & set(b64(data)) or fmt == "PNG"
    body = json.dumps({"images": [written(data)]}).encode()
    assert decoded(payloads.decode(body, "application/json", LIMITS))[0].equal(
        decoded(payloads.decode(data, "application/x-image", LIMITS))[0])
