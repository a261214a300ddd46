"""A corpus of hostile and odd requests to the serving endpoint, each with the status it must get.

Built from the classes of issue 14 (memory spent before it is checked; bodies the Java frontend
pre-parsed; pathological JSON) and from OWASP's file-upload and decompression guidance and
Pillow's security notes (zlib bombs in PNG chunks, frame bombs, formats under another format's
content type, headers that lie about sizes, odd colour modes). Used by
tests/containers/test_serving_hostile_input.py and by the soak benchmark (scripts/bench_soak.py).
"""
import base64
import http.client
import io
import json
import random
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image

MIB = 1024 * 1024
TOP_K = "X-Amzn-SageMaker-Custom-Attributes"


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    headers: dict = field(default_factory=dict)
    status: int = 400
    method: str = "POST"
    path: str = "/invocations"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(size=(96, 64), mode="RGB") -> Image.Image:
    pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, before_data: bytes = b"", rows: int | None = None) -> bytes:
    """A grey PNG declaring width x height, holding `rows` rows of pixels (all of them by default)."""
    raw = (b"\0" + b"\x80" * width) * (height if rows is None else rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + before_data + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def ztxt_bomb(chunks: int, inflated: int) -> bytes:
    text = b"Comment\0\0" + zlib.compress(b"A" * inflated, 9)
    return png(16, 16, before_data=b"".join(chunk(b"zTXt", text) for _ in range(chunks)))


def iccp_bomb(inflated: int) -> bytes:
    return png(16, 16, before_data=chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * inflated, 9)))


def apng(frames: int) -> bytes:
    images = [Image.new("L", (8, 8), i % 256) for i in range(frames)]
    return encode(images[0], "PNG", save_all=True, append_images=images[1:])


def jpeg_with_exif(exif: bytes) -> bytes:
    """A JPEG with an APP1 Exif segment holding `exif` (after the 'Exif\\0\\0' marker)."""
    data = encode(photo(), "JPEG")
    segment = b"Exif\0\0" + exif
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + data[2:]


def oriented_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return encode(photo(), "JPEG", exif=exif.tobytes())


def npy_claiming(shape, data: bytes = b"", descr: str = "<f4") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary", close: bool = True,
              disposition: bool = True) -> tuple[bytes, dict]:
    body = b""
    for kind, data in parts:
        body += f"--{boundary}\r\n".encode()
        if disposition:
            body += b'Content-Disposition: form-data; name="image"; filename="x.png"\r\n'
        body += f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    if close:
        body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def b64_json(key: str, values) -> bytes:
    return json.dumps({key: values}).encode()


@cache
def good_png() -> bytes:
    return encode(photo((28, 28), "L"), "PNG")


@cache
def corpus() -> tuple[Case, ...]:
    """Bodies sent to POST /invocations (and a few other routes), with the status each must get."""
    pixels = png(3162, 3162)  # 10 Mpx of one grey: a few kB
    cases = [
        # memory spent before it is checked
        Case("extreme aspect ratio: a 1 x 100,000 PNG", png(1, 100_000), {"Content-Type": "image/png"}),
        Case("one pixel over the 40 Mpx cap (6325 x 6325)", png(6325, 6325, rows=1),
             {"Content-Type": "image/png"}, 413),
        Case("decompression bomb: 20,000 x 20,000 declared", png(20_000, 20_000, rows=1),
             {"Content-Type": "image/png"}, 413),
        Case("64 compressible 10 Mpx PNGs in one JSON list", b64_json("images", [base64.b64encode(pixels).decode()]
                                                                       * 64), {"Content-Type": "application/json"}, 413),
        Case("a .npy header declaring 64 x 3 x 100,000 x 100,000", npy_claiming((64, 3, 100_000, 100_000)),
             {"Content-Type": "application/x-npy"}, 413),
        Case("a .npy header declaring more data than sent", npy_claiming((1, 3, 28, 28), b"\0" * 10),
             {"Content-Type": "application/x-npy"}),
        Case("a .npy of Python objects", npy_claiming((1,), b"", descr="|O"), {"Content-Type": "application/x-npy"}),
        Case("zTXt chunks inflating past Pillow's text budget", ztxt_bomb(8, 900_000), {"Content-Type": "image/png"}),
        Case("an iCCP profile inflating to 64 MB", iccp_bomb(64 * MIB), {"Content-Type": "image/png"}),
        Case("an animated PNG of 2,000 frames", apng(2000), {"Content-Type": "image/png"}),
        # Pillow allocates what the header declares (checked against the cap) and fills missing rows.
        Case("a PNG header claiming 4000 x 4000 over 10 rows of data", png(4000, 4000, rows=10),
             {"Content-Type": "image/png"}, 200),
        Case("a PNG whose data stops mid-stream", png(400, 400)[:-200], {"Content-Type": "image/png"}),
        Case("a truncated JPEG", encode(photo(), "JPEG")[:300], {"Content-Type": "image/jpeg"}),
        # formats the content type does not name
        Case("a GIF sent as image/png", encode(photo(), "GIF"), {"Content-Type": "image/png"}),
        Case("a TIFF sent as image/png", encode(photo(), "TIFF"), {"Content-Type": "image/png"}),
        Case("a WebP sent as image/jpeg", encode(photo(), "WEBP"), {"Content-Type": "image/jpeg"}),
        Case("a BMP sent as application/x-image", encode(photo(), "BMP"), {"Content-Type": "application/x-image"}),
        Case("an ICO sent as image/png", encode(photo((32, 32)), "ICO"), {"Content-Type": "image/png"}),
        Case("an SVG sent as image/png", b'<svg xmlns="http://www.w3.org/2000/svg"/>', {"Content-Type": "image/png"}),
        Case("a PNG sent as image/jpeg", good_png(), {"Content-Type": "image/jpeg"}),
        # odd but valid images are simply answered
        Case("a JPEG with EXIF orientation 6", oriented_jpeg(), {"Content-Type": "image/jpeg"}, 200),
        Case("a JPEG with a garbage EXIF segment", jpeg_with_exif(b"MM\0*\xff\xff\xff\xff" * 20),
             {"Content-Type": "image/jpeg"}, 200),
        Case("a CMYK JPEG", encode(photo(mode="CMYK"), "JPEG"), {"Content-Type": "image/jpeg"}, 200),
        Case("a 16-bit grey PNG", encode(Image.fromarray(np.full((40, 30), 40000, np.uint16)), "PNG"),
             {"Content-Type": "image/png"}, 200),
        Case("a palette PNG with transparency", encode(photo().convert("P"), "PNG", transparency=0),
             {"Content-Type": "image/png"}, 200),
        Case("a 1-bit PNG", encode(photo().convert("1"), "PNG"), {"Content-Type": "image/png"}, 200),
        Case("a grey+alpha PNG", encode(photo(mode="LA"), "PNG"), {"Content-Type": "image/png"}, 200),
    ]
    return tuple(cases + _bodies() + _json() + _headers_and_routes() + _work_and_answers())


def _bodies() -> list[Case]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        Case("a PNG with curl's default form content type", good_png(), form, 415),
        Case("form fields with a bad escape", b"a=1&b=%zz", form, 415),
        Case("no content type (read as an image)", good_png(), {}, 200),
        Case("no content type, a GIF", encode(photo(), "GIF"), {}, 400),
        Case("two content types in one", good_png(), {"Content-Type": "image/png, image/jpeg"}, 415),
        Case("text/html", b"<html></html>", {"Content-Type": "text/html"}, 415),
        Case("image/png in capitals with empty parameters", good_png(), {"Content-Type": "IMAGE/PNG;;;"}, 200),
        Case("multipart: one image part (curl -F)", *multipart([("image/png", good_png())]), 200),
        Case("multipart: a part without a name", *multipart([("image/png", good_png())], disposition=False), 200),
        Case("multipart: two parts", *multipart([("image/png", good_png())] * 2)),
        Case("multipart: no closing boundary", *multipart([("image/png", good_png())], close=False)),
        Case("multipart: a part of type application/octet-stream (curl, a file name it cannot place)",
             *multipart([("application/octet-stream", good_png())]), 200),
        Case("multipart: a part that says it is text", *multipart([("text/plain", good_png())]), 415),
        Case("multipart without a boundary", b"--x\r\n\r\n", {"Content-Type": "multipart/form-data"}),
        Case("multipart whose boundary never appears", b"just bytes", {"Content-Type": "multipart/form-data; boundary=q"}),
        Case("an empty body", b"", {"Content-Type": "image/png"}),
        Case("a body over the payload limit", b"\x89PNG" + b"\0" * (6 * MIB), {"Content-Type": "image/png"}, 413),
    ]


def _json() -> list[Case]:
    js = {"Content-Type": "application/json"}
    return [
        Case("JSON nested 100,000 deep", b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", js),
        Case("JSON with a 5,000-digit number", b'{"images": [' + b"7" * 5000 + b"]}", js),
        Case("JSON with 1e999999", b'{"images": [1e999999]}', js),
        Case("JSON with duplicate keys", b'{"image": "aGk=", "image": "aGk="}', js),
        Case("JSON with NaN", b'{"images": [NaN]}', js),
        Case("JSON that is a list", b"[]", js),
        Case("JSON in UTF-16", '{"image": "aGk="}'.encode("utf-16"), js),
        Case("JSON with an extra key", json.dumps({"image": base64.b64encode(good_png()).decode(),
                                                   "top_k": 3}).encode(), js),
        Case("JSON with 100,000 keys", json.dumps({f"k{i}": i for i in range(100_000)}).encode(), js),
        Case("JSON with an image that is not base64", b'{"image": "not base64!"}', js),
    ]


def _headers_and_routes() -> list[Case]:
    png_type = {"Content-Type": "image/png"}
    return [
        Case("custom attributes with Unicode", good_png(), {**png_type, TOP_K: "top_k=3;name=ünïcødé"}, 200),
        Case("top_k of 25 digits", good_png(), {**png_type, TOP_K: "top_k=" + "9" * 25}, 200),
        Case("top_k=1e3", good_png(), {**png_type, TOP_K: "top_k=1e3"}),
        Case("a 7 kB custom attribute", good_png(), {**png_type, TOP_K: "x=" + "a" * 7000}, 200),
        Case("a 9 kB header", good_png(), {**png_type, "X-Big": "a" * 9000}),
        Case("a query string naming another model", good_png(), png_type, 200, path="/invocations?model_name=other"),
        Case("GET /invocations", b"", {}, 405, method="GET"),
        Case("DELETE /ping", b"", {}, 405, method="DELETE", path="/ping"),
        Case("MMS's /predictions route", good_png(), png_type, 404, path="/predictions/model"),
        Case("MMS's /api-description", b"", {}, 404, method="GET", path="/api-description"),
        Case("OPTIONS /", b"", {}, 404, method="OPTIONS", path="/"),
        Case("the management API's /models", b"", {}, 404, method="GET", path="/models"),
        Case("a registration on the serving port", b"", {}, 404, path="/models?url=https://example.com/m.mar"),
        Case("a path escaping upwards", b"", {}, 404, method="GET", path="/../../etc/passwd"),
    ]


def scan_bomb(scans: int) -> bytes:
    """A progressive JPEG with its smallest scan repeated: libjpeg walks every block once per scan."""
    data = encode(photo((256, 256)), "JPEG", progressive=True)
    starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xda"] + [len(data) - 2]
    smallest = min((data[a:b] for a, b in zip(starts, starts[1:])), key=len)
    return data[:-2] + smallest * scans + b"\xff\xd9"


def _work_and_answers() -> list[Case]:
    """Bodies within the limits that cost a worker minutes or crash a parser, and answers the frontend
    cannot carry (found by a second sweep, issue 14's classes again)."""
    npy_type, lines = {"Content-Type": "application/x-npy"}, {"Content-Type": "application/jsonlines"}
    nested = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                      for i in range(1000))
    return [
        Case("a .npy of negative dimensions", npy_claiming((3, -28, -28), b"\0" * 9408), npy_type),
        Case("a .npy of two unknown dimensions", npy_claiming((-1, 3, -28, 28), b"\0" * 9408), npy_type),
        Case("a .npy of a boolean dimension", npy_claiming((True, 3, 28, 28), b"\0" * 9408), npy_type),
        Case("a .npy of finite values that overflow the model", npy_claiming(
            (3, 28, 28), np.full((3, 28, 28), 3e38, "<f4").tobytes()), npy_type),
        # fp32 answers these with numbers, int8 saturates: nonsense either way, refused in every precision
        Case("a .npy of values far beyond a normalised image's", npy_claiming(
            (3, 28, 28), np.full((3, 28, 28), -5e5, "<f4").tobytes()), npy_type),
        Case("multipart of 500,000 empty parts", b"--b\n\n" * 500_000 + b"--b--\n",
             {"Content-Type": "multipart/form-data; boundary=b"}),
        Case("multipart nested 1,000 deep", nested, {"Content-Type": "multipart/form-data; boundary=b0"}),
        Case("a multipart part type of 1,000 open comments",
             b"--b\r\nContent-Type: image/png (" + b"(" * 1000 + b"\r\n\r\n" + good_png() + b"\r\n--b--\r\n",
             {"Content-Type": "multipart/form-data; boundary=b"}),
        Case("a multipart boundary of 3,000 open comments", good_png(),
             {"Content-Type": "multipart/form-data; boundary=b (" + "(" * 3000}),
        Case("a progressive JPEG of 5,000 scans", scan_bomb(5000), {"Content-Type": "image/jpeg"}),
        Case("a progressive JPEG of 10 scans", scan_bomb(0), {"Content-Type": "image/jpeg"}, 200),
        Case("JSON Lines whose error lines outgrow the response limit", b"x\n" * 100_000, lines, 413),
        Case("Accept: application/json;q=0", good_png(), {"Content-Type": "image/png", "Accept": "application/json;q=0"},
             406),
        Case("Accept: */*;q=0", good_png(), {"Content-Type": "image/png", "Accept": "*/*;q=0"}, 406),
    ]


# --- a mixed load of good requests and the corpus' refused ones (stress test, make bench-soak) ---
def bad_requests() -> list:
    """The corpus' refused POST /invocations requests of up to 1 MiB (the larger ones only test limits)."""
    return [case for case in corpus() if case.method == "POST" and case.path == "/invocations"
            and case.status >= 400 and len(case.body) <= 1 << 20]


class Client:
    def __init__(self, host: str, port: int):
        self.connection = http.client.HTTPConnection(host, port, timeout=120)

    def post(self, body: bytes, headers: dict) -> tuple[int, float]:
        started = time.perf_counter()
        try:
            self.connection.request("POST", "/invocations", body, headers)
            response = self.connection.getresponse()
            response.read()
            status = response.status
            if response.getheader("connection", "").lower() == "close":
                self.connection.close()  # the server closes after an error; the next request reconnects
        except (OSError, http.client.HTTPException):
            self.connection.close()
            status = 0  # no answer at all
        return status, 1000 * (time.perf_counter() - started)


def mixed_load(host: str, port: int, good: list[bytes], bad: list, seconds: float, clients: int) -> list[tuple]:
    """`clients` keep-alive clients for `seconds`: three requests in four a good JPEG (top_k varying, so
    answers vary in size), one in four a refused request of the corpus. (kind, status, expected, ms) each."""
    results, lock, stop = [], threading.Lock(), time.perf_counter() + seconds

    def run(seed: int):
        client, rng = Client(host, port), random.Random(seed)
        while time.perf_counter() < stop:
            if rng.random() < 0.25:
                case = rng.choice(bad)
                status, ms = client.post(case.body, case.headers)
                row = ("bad", status, case.status, ms)
            else:
                headers = {"Content-Type": "image/jpeg" if good[0][:2] == b"\xff\xd8" else "image/png",
                           TOP_K: f"top_k={rng.randint(1, 20)}"}
                status, ms = client.post(rng.choice(good), headers)
                row = ("good", status, 200, ms)
            with lock:
                results.append(row)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
