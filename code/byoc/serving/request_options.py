"""Per-request options from the headers SageMaker forwards.

InvokeEndpoint forwards `Accept` and `CustomAttributes` (as the header
X-Amzn-SageMaker-Custom-Attributes); query strings do not reach the container.
"""
import json

from byoc.contract import CONTENT_TYPE_ALIASES, DEFAULT_TOP_K, JSON_LINES_TYPE, RESPONSE_TYPE
from byoc.serving.errors import RequestError


def check_accept(accept: str | None) -> None:
    """Only JSON is answered (one line of it: also JSON Lines): refuse an Accept that excludes both,
    q-values included (RFC 9110: the most specific range that matches a type sets its weight; 0 refuses)."""
    if not accept:
        return
    weights = dict(_media_range(part) for part in accept.split(",") if part.strip())
    if not any(_weight(weights, answer) > 0 for answer in (RESPONSE_TYPE, JSON_LINES_TYPE)):
        raise RequestError(406, f"Accept {accept!r} cannot be met; responses are {RESPONSE_TYPE}.")


def _media_range(part: str) -> tuple[str, float]:
    kind, *parameters = (piece.strip() for piece in part.split(";"))
    weight = 1.0
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0  # a q-value that is not a number accepts nothing
    return CONTENT_TYPE_ALIASES.get(kind.lower(), kind.lower()), weight


def _weight(weights: dict[str, float], media_type: str) -> float:
    for matching in (media_type, media_type.split("/")[0] + "/*", "*/*"):
        if matching in weights:
            return weights[matching]
    return 0.0


def top_k(custom_attributes: str | None, num_classes: int) -> int:
    """`top_k=N` among the custom attributes, at most num_classes. CustomAttributes is free text, so
    it is read as users write it: key=value pairs split by ',', ';' or '&' (a value may be quoted), or
    a JSON object such as json.dumps({"top_k": 3})."""
    text = (custom_attributes or "").strip()
    given = _from_json_object(text) if text.startswith("{") else _from_pairs(text)
    if given is None:
        return min(DEFAULT_TOP_K, num_classes)
    k = given if isinstance(given, int) and not isinstance(given, bool) else _whole_number(given)
    if k is None or k < 1:
        raise RequestError(400, f"top_k={given!r} must be a whole number of at least 1.")
    return min(k, num_classes)


def _from_pairs(text: str) -> str | None:
    for item in text.replace(";", ",").replace("&", ",").split(","):
        key, _, value = item.partition("=")
        if key.strip().lower() == "top_k":
            return value.strip().strip("'\"")
    return None


def _from_json_object(text: str):
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON after all (or nested past the stack): no top_k for us
        return _from_pairs(text)
    return document.get("top_k") if isinstance(document, dict) else None


def _whole_number(value) -> int | None:
    try:
        return int(value.strip()) if isinstance(value, str) else None
    except ValueError:
        return None
