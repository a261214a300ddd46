import io

import numpy as np
import pytest
import torch
from PIL import Image

from byoc.model_package import ModelSpec
from byoc.preprocessing import Preprocessing
from byoc.serving.errors import RequestError
from byoc.serving.inference import Classifier, decode_image


def encoded(fmt: str, size=(28, 28)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("content_type, fmt", [("image/jpeg", "JPEG"), ("image/png", "PNG"),
                                               ("application/x-image", "PNG"), ("image/png; charset=x", "PNG")])
def test_supported_images_decode(content_type, fmt):
    assert decode_image(encoded(fmt), content_type).size == (28, 28)


@pytest.mark.parametrize(
    "body, content_type, status, says",
    [
        (b"abc", "text/plain", 415, "'text/plain' is not supported"),
        (b"abc", None, 415, "'(none)' is not supported"),
        (b"", "image/png", 400, "empty"),
        (b"\x00garbage\xff" * 10, "image/jpeg", 400, "could not be decoded"),
        (encoded("JPEG", (64, 64))[:200], "image/jpeg", 400, "could not be decoded"),
    ],
)
def test_bad_requests_are_client_errors(body, content_type, status, says):
    with pytest.raises(RequestError) as error:
        decode_image(body, content_type)
    assert error.value.status == status and says in error.value.message


def test_decompression_bomb_is_refused():
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")  # 100 Mpx in a few kB
    with pytest.raises(RequestError, match="too large"):
        decode_image(buffer.getvalue(), "image/png")


def test_predictions_are_sorted_top_k_probabilities():
    spec = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(28, 28))
    classifier = Classifier(spec.build().eval(), spec, torch.device("cpu"))
    batch = torch.stack([classifier.preprocess(Image.open(io.BytesIO(encoded("PNG")))) for _ in range(3)])
    results = classifier.predict(batch, top_k=5)
    assert len(results) == 3
    for top in results:
        probabilities = [p.probability for p in top]
        assert len(top) == 5 and probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1.0001 and len({p.label for p in top}) == 5
