"""multi-model-server's entry point: handle(data, context) for a batch of requests.

MMS calls handle(None, context) once when a worker loads the model, then
handle(requests, context) with one or more requests. Every request gets its
own status and JSON body: a bad one answers 4xx without spoiling the rest.
"""
import json
import logging

import torch

from byoc.serving.errors import RequestError
from byoc.serving.inference import Classifier, decode_image

logger = logging.getLogger(__name__)
_classifier: Classifier | None = None


def _device(context) -> torch.device:
    gpu_id = context.system_properties.get("gpu_id")
    if torch.cuda.is_available() and gpu_id is not None:
        return torch.device(f"cuda:{gpu_id}")
    return torch.device("cpu")


def _header(context, idx: int, name: str) -> str | None:
    for key, value in (context.get_all_request_header(idx) or {}).items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value.decode() if isinstance(value, (bytes, bytearray)) else value
    return None


def _body(request: dict) -> bytes:
    body = request.get("body", request.get("data")) if isinstance(request, dict) else None
    if body is None:
        return b""
    return bytes(body) if isinstance(body, (bytes, bytearray)) else str(body).encode()


def handle(data, context):
    global _classifier
    if _classifier is None:
        _classifier = Classifier.load(context.system_properties["model_dir"], _device(context))
        logger.info("model loaded: %s, %d classes", _classifier.spec.architecture, len(_classifier.spec.class_names))
    if data is None:  # the load-time call
        return None

    responses: list[str | None] = [None] * len(data)
    tensors, positions = [], []
    for idx, request in enumerate(data):
        try:
            image = decode_image(_body(request), _header(context, idx, "Content-Type"))
            tensors.append(_classifier.preprocess(image))
            positions.append(idx)
        except RequestError as error:
            context.set_response_status(error.status, error.reason, idx)
            responses[idx] = json.dumps({"error": error.message, "status": error.status})
        context.set_response_content_type(idx, "application/json")

    if tensors:
        predictions = _classifier.predict(torch.stack(tensors))
        for idx, top in zip(positions, predictions):
            responses[idx] = json.dumps({"predictions": [p.__dict__ for p in top]})
    return responses
