"""JSON Lines requests: one JSON object per line in, one answer per line out, in order.

Batch transform's MultiRecord strategy packs as many lines into one request as MaxPayloadInMB
allows, so a request may hold thousands of images: they are read and run in groups of at most
BYOC_MAX_IMAGES images, so a worker never holds more than one group's pixels and model inputs.
A line that cannot be read is answered by an error line ({"error": "Line N: ...", "status": 4xx})
and the other lines are answered as usual; the request itself is a 200.
"""
from byoc.contract import JSON_TYPE
from byoc.serving import payloads
from byoc.serving.errors import RequestError, answers_json, error_body
from byoc.serving.inference import Classifier, Prepared
from byoc.serving.settings import Limits


def answer(classifier: Classifier, lines: list[bytes], top_k: int, limits: Limits) -> str:
    answers: list[str] = []
    group: dict[int, Prepared] = {}  # line number -> its images as a model batch
    for number, line in enumerate(lines, start=1):
        try:
            if not line.strip():
                raise RequestError(400, "it is empty")
            group[number] = classifier.prepare(payloads.decode(line, JSON_TYPE, limits), top_k)
        except RequestError as error:
            answers.append(error_body(error.status, f"Line {number}: {error.message}"))
            continue
        answers.append("")  # filled in when its group has run
        if sum(len(p.batch) for p in group.values()) >= limits.max_images:
            _run(classifier, group, answers)
    _run(classifier, group, answers)
    return "\n".join(answers)


def _run(classifier: Classifier, group: dict[int, Prepared], answers: list[str]) -> None:
    if group:
        for number, result in zip(group, classifier.answer(list(group.values()))):
            try:
                answers[number - 1] = answers_json(result)
            except RequestError as error:
                answers[number - 1] = error_body(error.status, f"Line {number}: {error.message}")
        group.clear()
