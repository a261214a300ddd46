"""Per-request options from the headers SageMaker forwards.

InvokeEndpoint forwards `Accept` and `CustomAttributes` (as the header
X-Amzn-SageMaker-Custom-Attributes); query strings do not reach the container.
"""
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
    """`top_k=N` among comma- or semicolon-separated key=value custom attributes; at most num_classes."""
    for item in (custom_attributes or "").replace(";", ",").split(","):
        key, _, value = item.partition("=")
        if key.strip().lower() == "top_k":
            try:
                k = int(value.strip())
            except ValueError:
                k = 0
            if k < 1:
                raise RequestError(400, f"top_k={value.strip()!r} must be a whole number of at least 1.")
            return min(k, num_classes)
    return min(DEFAULT_TOP_K, num_classes)
