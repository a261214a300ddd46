"""JSON Lines requests (batch transform's MultiRecord over SplitType=Line): recognised under both
content types, answered one line per line in order, a bad line answered by an error line, and
run in groups so a request of many lines never becomes one huge batch."""
import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from byoc import model_package
from byoc.contract import ModelSpec, Preprocessing
from byoc.serving import json_lines, payloads, request_options
from byoc.serving.errors import RequestError
from byoc.serving.inference import Classifier
from byoc.serving.settings import Limits

SPEC = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(28, 28))
LIMITS = Limits(max_payload_bytes=1 << 22, max_image_pixels=1_000_000, max_request_pixels=2_000_000,
                max_aspect_ratio=20, max_images=4)


def png(seed: int, size=(28, 28)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def line(data: bytes) -> bytes:
    return json.dumps({"image": base64.b64encode(data).decode()}).encode()


class Counting(Classifier):
    """The real classifier, counting the images of each forward pass."""

    def __init__(self, *args):
        super().__init__(*args)
        self.passes: list[int] = []

    def answer(self, requests):
        self.passes.append(sum(len(r.batch) for r in requests))
        return super().answer(requests)


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    return Counting(model_package.build(SPEC).eval(), SPEC, torch.device("cpu"))


@pytest.mark.parametrize("content_type", ["application/jsonlines", "application/json"])
def test_several_lines_are_a_json_lines_request_under_either_type(content_type):
    body = b"\n".join(line(png(i)) for i in range(3)) + b"\n"
    payload = payloads.decode(body, content_type, LIMITS)
    assert payload.lines is not None and len(payload.lines) == 3 and payload.images is None


@pytest.mark.parametrize("body", [
    line(png(0)) + b"\n",  # one record, as SingleRecord sends it: a JSON document
    json.dumps({"image": base64.b64encode(png(0)).decode()}, indent=2).encode(),  # pretty-printed
])
def test_one_json_document_stays_a_document(body):
    payload = payloads.decode(body, "application/json", LIMITS)
    assert payload.lines is None and len(payload.images) == 1


@pytest.mark.parametrize("first", [b"", b"{truncated", b'"not an object"'])
def test_a_multi_record_body_whose_first_record_is_bad_is_still_answered_line_by_line(first):
    """A transform's file may open with a blank or damaged record: under application/json too, the
    request is JSON Lines (its first answer an error line), not one 400 that fails the whole batch."""
    payload = payloads.decode(first + b"\n" + line(png(0)) + b"\n" + line(png(1)) + b"\n", "application/json", LIMITS)
    assert payload.lines == [first, line(png(0)), line(png(1))]


def test_malformed_json_on_several_lines_is_still_a_400():
    with pytest.raises(RequestError) as error:
        payloads.decode(b'{\n  "image": \n', "application/json", LIMITS)
    assert error.value.status == 400


def test_each_line_is_answered_in_order_with_bad_lines_answered_by_error_lines(classifier):
    good = [png(i) for i in range(6)]
    lines = [line(good[0]), b"not json", line(good[1]), b"", line(b"\x89PNG broken"), line(good[2]),
             json.dumps({"image": base64.b64encode(png(9, (2000, 10))).decode()}).encode(),  # aspect ratio
             line(good[3]), line(good[4]), line(good[5])]
    answers = [json.loads(text) for text in json_lines.answer(classifier, lines, 3, LIMITS).split("\n")]
    assert len(answers) == len(lines)
    errors = {n: a for n, a in enumerate(answers, start=1) if "error" in a}
    assert sorted(errors) == [2, 4, 5, 7] and all(a["status"] == 400 for a in errors.values())
    assert all(errors[n]["error"].startswith(f"Line {n}: ") for n in errors)
    expected = [classifier.predict(payloads.decode(line(image), "application/json", LIMITS), 3) for image in good]
    got = [a for a in answers if "error" not in a]
    assert [[p["label"] for p in a["predictions"]] for a in got] == \
           [[p["label"] for p in e["predictions"]] for e in expected]
    for a, e in zip(got, expected):
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in e["predictions"]], abs=1e-5)


def test_many_lines_run_in_groups_of_at_most_max_images(classifier):
    lines = [line(png(i)) for i in range(11)]
    answers = json_lines.answer(classifier, lines, 1, LIMITS).split("\n")
    assert len(answers) == 11 and all("predictions" in json.loads(a) for a in answers)
    assert sum(classifier.passes) == 11 and max(classifier.passes) <= LIMITS.max_images


def test_json_lines_answers_meet_a_json_lines_accept():
    request_options.check_accept("application/jsonlines")
    with pytest.raises(RequestError):
        request_options.check_accept("text/csv")
