import numpy as np
import pytest
import torch
from PIL import Image

from byoc import model_package
from byoc.contract import ModelSpec, Preprocessing
from byoc.serving.errors import RequestError
from byoc.serving.inference import Classifier
from byoc.serving.payloads import Payload

SPEC = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(28, 28))


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return Classifier(model_package.build(SPEC).eval(), SPEC, torch.device("cpu"))


def test_images_and_arrays_become_one_model_batch(classifier):
    images = Payload(images=[("Image 0", Image.new("L", (40, 30))), ("Image 1", Image.new("RGB", (28, 28)))])
    array = Payload(array=np.zeros((3, 3, 28, 28), np.float32))
    assert classifier.to_batch(images).shape == (2, 3, 28, 28)
    assert classifier.to_batch(array).shape == (3, 3, 28, 28)


def test_an_array_of_the_wrong_size_is_400(classifier):
    with pytest.raises(RequestError, match=r"\(3, 28, 28\)"):
        classifier.to_batch(Payload(array=np.zeros((1, 3, 32, 32), np.float32)))


def test_predictions_are_sorted_top_k_probabilities(classifier):
    probabilities = classifier.probabilities(torch.randn(3, 3, 28, 28))
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(3))
    for top in classifier.top_k(probabilities, 4):
        values = [p.probability for p in top]
        assert len(top) == 4 and values == sorted(values, reverse=True) and len({p.label for p in top}) == 4


def test_running_out_of_memory_while_loading_is_a_memory_error_for_mms():
    """MMS answers a load's MemoryError with 507 (SageMaker then unloads other models)."""
    from byoc.serving.handler import _as_memory_error

    assert isinstance(_as_memory_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")),
                      MemoryError)
    assert isinstance(_as_memory_error(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to "
                                                    "allocate 1 GB")), MemoryError)
    other = RuntimeError("size mismatch for fc.weight")
    assert _as_memory_error(other) is other


def test_a_lone_image_goes_to_the_model_as_decoded_and_answers_as_in_a_batch(classifier):
    """One image of one request: no stacking or concatenating copy, already in the model's
    channels-last layout; its answer is the one it gets beside other requests."""
    def payload(colour):
        return Payload(images=[("Image 0", Image.new("RGB", (28, 28), colour))])

    lone = classifier.to_batch(payload((200, 10, 90)))
    assert lone.shape == (1, 3, 28, 28) and lone.is_contiguous(memory_format=torch.channels_last)
    alone = classifier.answer([classifier.prepare(payload((200, 10, 90)), 3)])[0]
    together = classifier.answer([classifier.prepare(payload((200, 10, 90)), 3),
                                  classifier.prepare(payload((0, 0, 0)), 3)])[0]
    assert [p["label"] for p in alone["predictions"]] == [p["label"] for p in together["predictions"]]
    assert alone["predictions"][0]["probability"] == pytest.approx(together["predictions"][0]["probability"], abs=1e-5)
