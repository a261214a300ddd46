"""What botocore's validator leaves out: enums, maximums and patterns of the API's own model.

botocore checks required members, types and minimums only (tests/support.dry_run runs it), and
moto accepts much that AWS refuses (update_endpoint it does not implement at all). So the
requests byoc-cloud prints are also walked along their shapes here; a member outside its enum,
above its maximum or off its pattern fails the test, naming the member."""
import re

import boto3


def _pattern(text: str):
    try:
        return re.compile(text)
    except re.error:  # Java-only classes such as \p{L}: left unchecked
        return None


def violations(value, shape, path: str) -> list[str]:
    meta, kind = shape.metadata, shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return [v for name, item in value.items() if name in shape.members
                for v in violations(item, shape.members[name], f"{path}.{name}")]
    if kind == "list" and isinstance(value, list):
        found = [f"{path}: {len(value)} items > {meta['max']}"] if len(value) > meta.get("max", len(value)) else []
        return found + [v for i, item in enumerate(value) for v in violations(item, shape.member, f"{path}[{i}]")]
    if kind == "map" and isinstance(value, dict):
        found = [f"{path}: {len(value)} entries > {meta['max']}"] if len(value) > meta.get("max", len(value)) else []
        return found + [v for key, item in value.items()
                        for v in violations(key, shape.key, f"{path} key") + violations(item, shape.value,
                                                                                      f"{path}[{key}]")]
    found = []
    if kind == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            found.append(f"{path}={value!r} not in {shape.enum}")
        if len(value) > meta.get("max", len(value)):
            found.append(f"{path}: {len(value)} characters > {meta['max']}")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern and not pattern.fullmatch(value):
            found.append(f"{path}={value!r} off the pattern {meta['pattern']}")
    elif kind in ("integer", "long", "double", "float") and isinstance(value, (int, float)):
        if value > meta.get("max", value):
            found.append(f"{path}={value} > {meta['max']}")
    return found


def assert_within_model(request: dict) -> None:
    """One request as --dry-run prints it ({"client", "operation", "request"})."""
    client = boto3.client(request["client"], region_name="us-east-1")
    name = client.meta.method_to_api_mapping[request["operation"]]
    found = violations(request["request"], client.meta.service_model.operation_model(name).input_shape, name)
    assert not found, "\n".join(found)
