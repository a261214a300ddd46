"""JSON request bodies, read strictly (no torch: the multi-model load check uses it too)."""
import json

from byoc.serving.errors import RequestError


def _no_duplicates(pairs: list) -> dict:
    document = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def strict_json(body: bytes):
    """json.loads, refusing duplicate keys, NaN/Infinity and nesting deeper than Python recurses.
    A UTF-8 byte order mark before the value is skipped (RFC 8259 allows it): Windows tools write
    one at the start of a file, and a transform job sends it with the first record."""
    try:
        return json.loads(body.decode("utf-8-sig"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise RequestError(400, "The body is not valid JSON: it is nested too deeply.") from None
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError, and ints over 4300 digits
        raise RequestError(400, f"The body is not valid JSON: {str(error)[:200]}.") from None
