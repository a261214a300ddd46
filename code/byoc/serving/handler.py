"""multi-model-server's entry point: handle(data, context) for a batch of requests.

MMS calls handle(None, context) once when a worker loads the model, then
handle(requests, context) with the requests it batched (BYOC_MAX_BATCH_SIZE,
BYOC_MAX_BATCH_DELAY_MS). All valid images of all requests go through one
forward pass; every request gets its own status and JSON body, so a bad one
answers 4xx without spoiling the rest.

Each call runs under an alarm: a forward pass that hangs half a second past
SAGEMAKER_MODEL_SERVER_TIMEOUT is killed by the kernel (SIGALRM's default action,
which needs nothing from the stuck process), so it frees its memory. The frontend
has answered its requests 504 at the timeout; MMS sees the worker go and starts a
new one, which loads the model again. A load gets settings.MODEL_LOAD_TIMEOUT_S.
"""
import logging
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import torch

from byoc import contract
from byoc.serving import json_lines, payloads, request_options, settings
from byoc.serving.errors import RequestError, answers_json, error_body
from byoc.serving.inference import Classifier, Prepared

logger = logging.getLogger(__name__)
ALARM_GRACE_S = 0.5  # after the frontend's 504 at the timeout
_classifier: Classifier | None = None
_settings: settings.Settings | None = None


def _arm(seconds: float) -> None:
    """Kill this worker process after `seconds` (plus the grace) unless disarmed (0)."""
    signal.setitimer(signal.ITIMER_REAL, seconds + ALARM_GRACE_S if seconds else 0)


def _as_memory_error(error: Exception) -> Exception:
    """Out-of-memory while loading is MemoryError, which MMS answers 507 (SageMaker then unloads
    other models); torch says it with its own exception types."""
    text = str(error).lower()
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "not enough memory" in text:
        return MemoryError(f"not enough memory to load the model: {str(error)[:300]}")
    return error


def _device(context) -> torch.device:
    """The GPU MMS gave this worker, or the CPU when it gave none (no GPUs, or BYOC_DEVICE=cpu);
    never the CPU in place of a GPU that does not work (serve checked it before starting)."""
    gpu_id = context.system_properties.get("gpu_id")
    if gpu_id is None:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"this worker was given GPU {gpu_id}, but torch cannot use it "
                           "(torch.cuda.is_available() is False); not falling back to the CPU")
    return torch.device(f"cuda:{gpu_id}")


def _refuse(error: contract.ModelPackageError, model_name: str) -> None:
    """A package whose weights do not fit model.json, or are not finite, fails every worker alike: say
    why, once, in a file of the model server's run directory (its TMPDIR). In a single-model
    container, also stop the model server (the JVM above this worker and MMS's Python server), so
    serve exits with the reason rather than MMS starting worker after worker while /ping answers 503
    until SageMaker's health check gives up. A multi-model load answers 400 with it (MultiModels)."""
    logger.error("cannot serve: %s", error)
    Path(os.environ["TMPDIR"], settings.refusal_file(model_name, _settings.multi_model)).write_text(str(error))
    if not _settings.multi_model:
        frontend = next((p for p in psutil.Process().parents() if p.name() == "java"), None)
        if frontend is not None:
            frontend.terminate()
        os._exit(1)  # the reason is said; MMS's traceback of the same would only bury it


def _load(context) -> None:
    global _classifier, _settings
    _settings = settings.from_environment()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    torch.set_num_threads(_settings.torch_threads)
    device = _device(context)
    _arm(settings.MODEL_LOAD_TIMEOUT_S)
    try:
        _classifier = Classifier.load(context.system_properties["model_dir"], device, _settings.precision,
                                      _settings.min_agreement, _settings.cpu_graph)
    except contract.ModelPackageError as error:
        _refuse(error, context.model_name)
        raise
    except (RuntimeError, MemoryError) as error:
        raise _as_memory_error(error) from None
    finally:
        _arm(0)
    logger.info("model loaded on %s: %s, %d classes, %d torch threads; precision %s; %s", device,
                _classifier.spec.architecture, _classifier.num_classes, _settings.torch_threads,
                _classifier.precision.reason, _classifier.mode)


def _stall_if_testing() -> None:
    """Test hook (BYOC_TEST_STALL_FILE): while that file exists, block like a hung forward pass."""
    if _settings.stall_file and os.path.exists(_settings.stall_file):
        logger.warning("test hook: %s exists, this forward pass blocks", _settings.stall_file)
        threading.Event().wait()


def _headers(context, index: int) -> dict[str, str]:
    """Request headers, lower-cased names; MMS also files the body's own entry here (a dict): skip it."""
    headers = {}
    for name, value in (context.get_all_request_header(index) or {}).items():
        if isinstance(value, (bytes, bytearray)):
            value = value.decode(errors="replace")
        if isinstance(name, str) and isinstance(value, str):
            headers[name.lower()] = value
    return headers


def _body(request) -> bytes:
    body = request.get("body", request.get("data")) if isinstance(request, dict) else None
    if body is None:
        return b""
    return bytes(body) if isinstance(body, (bytes, bytearray)) else str(body).encode()


def _read(request, headers: dict[str, str]) -> tuple[payloads.Payload, int]:
    request_options.check_accept(headers.get("accept"))
    k = request_options.top_k(headers.get(contract.CUSTOM_ATTRIBUTES_HEADER.lower()), _classifier.num_classes)
    return payloads.decode(_body(request), headers.get("content-type"), _settings.limits), k


def _answer_lines(by_line: dict, context, responses: list, fail) -> None:
    for index, (lines, k) in by_line.items():
        try:
            _stall_if_testing()
            responses[index] = json_lines.answer(_classifier, lines, k, _settings.limits)
            context.set_response_content_type(index, contract.JSON_LINES_TYPE)
        except Exception:
            logger.exception("JSON Lines request %d failed", index)
            fail(index, 500, "The model failed on this request.")


def handle(data, context):
    if _classifier is None:
        _load(context)
    if data is None:  # the load-time call
        return None
    _arm(_settings.timeout_s)
    try:
        return _within_limit(_answer(data, context), context)
    finally:
        _arm(0)
        # MMS's worker writes this store's per-request metrics as lines after each answer unless it
        # is None; its frontend parses each line, then hands it to a logger log4j2.xml turns off.
        context.metrics = None


def _within_limit(responses: list, context) -> list:
    """Each answer within MMS's max_response_size: its frontend drops the worker's connection (and
    restarts the worker) over a longer one, so an answer that would not fit is a 413 instead."""
    limit = _settings.limits.max_payload_bytes
    for index, response in enumerate(responses):
        # UTF-8 takes at most 4 bytes a character: most answers need no encoding to be measured.
        if response is not None and len(response) * 4 > limit and (size := len(response.encode())) > limit:
            message = (f"The answer would have {size:,} bytes; at most {limit:,} fit in a response "
                       "(BYOC_MAX_PAYLOAD_MB). Ask for fewer classes (top_k) or send fewer lines.")
            context.set_response_status(413, RequestError(413, message).reason, index)
            context.set_response_content_type(index, contract.RESPONSE_TYPE)
            responses[index] = error_body(413, message)
    return responses


def _answer(data, context) -> list:
    started = time.perf_counter()
    responses: list[str | None] = [None] * len(data)

    def fail(index: int, status: int, message: str) -> None:
        context.set_response_status(status, RequestError(status, message).reason, index)
        responses[index] = error_body(status, message)

    pending: dict[int, Prepared] = {}
    by_line: dict[int, tuple[list[bytes], int]] = {}  # JSON Lines requests: answered after the batch
    for index, request in enumerate(data):
        context.set_response_content_type(index, contract.RESPONSE_TYPE)
        try:
            payload, k = _read(request, _headers(context, index))
            if payload.lines is not None:
                by_line[index] = payload.lines, k
            else:
                pending[index] = _classifier.prepare(payload, k)
        except RequestError as error:
            fail(index, error.status, error.message)
        except Exception:  # a decoder bug must not take the batch down, nor leak a traceback
            logger.exception("request %d could not be prepared", index)
            fail(index, 500, "The request could not be processed.")
    _answer_lines(by_line, context, responses, fail)
    if not pending:
        return responses

    prepared = time.perf_counter()
    try:
        _stall_if_testing()
        answers = _classifier.answer(list(pending.values()))
    except Exception:
        logger.exception("forward pass failed for %d request(s)", len(pending))
        for index in pending:
            fail(index, 500, "The model failed on this batch.")
        return responses
    # Where a request's time goes inside the worker (make bench-serve reads this line).
    logger.info("forward pass: %d request(s), %d image(s); inputs %.1f ms, model %.1f ms",
                len(pending), sum(len(p.batch) for p in pending.values()),
                1000 * (prepared - started), 1000 * (time.perf_counter() - prepared))
    for index, answer in zip(pending, answers):
        try:
            responses[index] = answers_json(answer)
        except RequestError as error:
            fail(index, error.status, error.message)
    return responses
