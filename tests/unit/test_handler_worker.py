"""The handler as MMS's own Python worker code calls it (mms.service.Service): what each request
leaves behind besides its answer."""
import dataclasses
import io

import pytest
import torch
from mms.service import Service
from PIL import Image

from byoc import model_package
from byoc.contract import ModelSpec, Preprocessing
from byoc.serving import handler
from byoc.serving.errors import RequestError, answers_json

SPEC = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(28, 28))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model_package.save(model_package.build(SPEC), SPEC, str(model_dir))
    threads = torch.get_num_threads()
    service = Service("model", str(model_dir), None, handler.handle, None, 8)
    handler.handle(None, service.context)  # MMS's load-time call
    yield service
    torch.set_num_threads(threads)  # the load set the worker's


def jpeg_request(request_id: bytes) -> dict:
    """One prediction as MMS's worker reads it off the frontend's socket (mms.protocol)."""
    buffer = io.BytesIO()
    Image.new("RGB", (28, 28), (120, 30, 200)).save(buffer, "JPEG")
    return {"requestId": request_id, "headers": [{"name": b"Content-Type", "value": b"image/jpeg"}],
            "parameters": [{"name": "body", "contentType": "image/jpeg", "value": buffer.getvalue()}]}


def test_mms_is_left_no_per_request_metrics_to_write(service):
    """MMS's worker writes context.metrics after each answer when it is set (mms.model_service_worker);
    its frontend parses each line, then drops it (log4j2.xml turns MODEL_METRICS off)."""
    answer = service.predict([jpeg_request(b"two")])
    assert b'"predictions"' in bytes(answer)
    assert service.context.metrics is None


def lines_request(request_id: bytes, lines: int) -> dict:
    body = b"not json\n" * lines
    return {"requestId": request_id, "headers": [{"name": b"Content-Type", "value": b"application/jsonlines"}],
            "parameters": [{"name": "body", "contentType": "application/jsonlines", "value": body}]}


def test_an_answer_longer_than_a_response_may_be_is_a_413(service, monkeypatch):
    """MMS's frontend drops the worker's connection over a response field longer than max_response_size
    (BYOC_MAX_PAYLOAD_MB): the worker must never send one."""
    limits = dataclasses.replace(handler._settings.limits, max_payload_bytes=4000)
    monkeypatch.setattr(handler, "_settings", dataclasses.replace(handler._settings, limits=limits))
    answer = bytes(service.predict([lines_request(b"long", 100), jpeg_request(b"short")]))
    assert b'"status": 413' in answer and b"at most 4,000 fit in a response" in answer
    assert b'"predictions"' in answer  # the other request in the batch is answered as usual


def test_a_prediction_that_is_not_a_number_is_the_inputs_fault():
    with pytest.raises(RequestError) as error:
        answers_json({"predictions": [{"label": "c0", "probability": float("nan")}]})
    assert error.value.status == 400 and "not a number" in error.value.message
