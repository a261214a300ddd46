"""Per-request options from the headers SageMaker forwards.

InvokeEndpoint forwards `Accept` and `CustomAttributes` (as the header
X-Amzn-SageMaker-Custom-Attributes); query strings do not reach the container.
"""
from byoc.contract import DEFAULT_TOP_K, JSON_LINES_TYPE, RESPONSE_TYPE
from byoc.serving.errors import RequestError


def check_accept(accept: str | None) -> None:
    """Only JSON is answered (one line of it: also JSON Lines): refuse an Accept that excludes both."""
    if not accept:
        return
    allowed = {RESPONSE_TYPE, JSON_LINES_TYPE, "application/*", "*/*"}
    if not any(part.split(";")[0].strip().lower() in allowed for part in accept.split(",")):
        raise RequestError(406, f"Accept {accept!r} cannot be met; responses are {RESPONSE_TYPE}.")


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
