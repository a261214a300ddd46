"""The limits of AWS's own API models: enums, lengths, minimums, maximums and patterns. botocore's
client enforces only required members, types and minimums, and only as a call is sent (not for
--dry-run), so a 40-character tuning job name or an unknown instance type would reach AWS (and
moto accepts many of them); byoc-cloud checks every request here first and refuses before any call.
"""
import difflib
import math
import re
from functools import lru_cache

from botocore.model import Shape


class ModelViolation(ValueError):
    """A request member outside what the service model allows, with its path and the rule."""


@lru_cache(maxsize=None)
def _pattern(text: str):
    """AWS patterns are Java regexes meant to match the whole value; the few Python cannot compile
    (Unicode classes such as \\p{L}) are left to the service."""
    try:
        return re.compile(text)
    except re.error:
        return None


def _check_scalar(value, shape: Shape, path: str) -> None:
    meta = shape.metadata
    if shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            raise ModelViolation(f"{path}={value!r} is not {_one_of(value, shape.enum)}")
        if "max" in meta and len(value) > meta["max"]:
            raise ModelViolation(f"{path} is {len(value)} characters long; at most {meta['max']} are allowed")
        if len(value) < meta.get("min", 0):
            raise ModelViolation(f"{path}={value!r} is {len(value)} characters long; at least {meta['min']} are needed")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern and not pattern.fullmatch(value):
            raise ModelViolation(f"{path}={value!r} does not match the pattern {meta['pattern']}")
    elif shape.type_name in ("integer", "long", "double", "float") and isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ModelViolation(f"{path}={value} is not a finite number")
        if "max" in meta and value > meta["max"]:
            raise ModelViolation(f"{path}={value} is above the maximum {meta['max']:g}")
        if "min" in meta and value < meta["min"]:
            raise ModelViolation(f"{path}={value} is below the minimum {meta['min']:g}")
    elif shape.type_name == "blob" and isinstance(value, (bytes, bytearray)):
        if "max" in meta and len(value) > meta["max"]:
            raise ModelViolation(f"{path} is {len(value)} bytes; at most {meta['max']} are allowed")


def _one_of(value: str, allowed: list[str]) -> str:
    """The allowed values, or for a long list (instance types) its size and the nearest few."""
    if len(allowed) <= 12:
        return f"one of {', '.join(allowed)}"
    near = difflib.get_close_matches(value.lower(), allowed, n=3, cutoff=0.5)
    return f"one of the {len(allowed)} values the API allows" + (f" (nearest: {', '.join(near)})" if near else "")


def check(value, shape: Shape, path: str) -> None:
    """Walk value along shape; raise ModelViolation at the first member the model forbids."""
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                check(member, shape.members[name], f"{path}.{name}")
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            raise ModelViolation(f"{path} has {len(value)} items; at most {shape.metadata['max']} are allowed")
        for i, item in enumerate(value):
            check(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            raise ModelViolation(f"{path} has {len(value)} entries; at most {shape.metadata['max']} are allowed")
        for key, item in value.items():
            check(key, shape.key, f"{path} key")
            check(item, shape.value, f"{path}[{key!r}]")
    else:
        _check_scalar(value, shape, path)


def check_request(client, operation: str, request: dict) -> None:
    """operation in boto3's snake_case (create_training_job), checked against client's model."""
    name = client.meta.method_to_api_mapping[operation]
    check(request, client.meta.service_model.operation_model(name).input_shape, name)
