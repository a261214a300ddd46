"""A multi-model load request (POST /models), checked before the model server registers anything.

`python -m byoc.serving.load_request --store /opt/ml/models --workers N` reads the request body
on stdin and prints one JSON line: {"status": 200, "model_name": ..., "path": ...} or
{"status": 4xx/507, "error": ...}. The frontend (containers/serving/mms, LoadRequest.java) runs it
as the model server's own user, so "readable" below means readable by that user.

  body        a JSON object with exactly model_name and url, both strings (SageMaker's request)
  model_name  1-128 letters, digits and . _ - (it becomes a URL path segment)
  url         a directory under the store, after resolving symlinks: no URLs, no ".." escapes
  files       every file readable and every folder searchable by this user: 403 naming the first
              one that is not (fix: chmod -R a+rX, or BYOC_SERVER_USER=root)
  package     model.json as byoc.contract reads it; model.safetensors a safetensors file
  memory      the container has room for it: 507 when it has not, so SageMaker unloads others
  weights     that they fit the architecture and are finite is checked by the worker as it loads
              them (torch is loaded there): a refusal is a 400 too (byoc.serving.handler)
"""
import argparse
import json
import os
import pwd
import re
import sys
from pathlib import Path

from byoc import contract
from byoc.serving import memory
from byoc.serving.errors import RequestError
from byoc.serving.json_bodies import strict_json

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def parse(body: bytes) -> tuple[str, str]:
    """(model_name, url) from SageMaker's load request, refusing anything else in it."""
    document = strict_json(body)
    if not isinstance(document, dict) or set(document) != {"model_name", "url"}:
        extra = sorted(set(document) - {"model_name", "url"}) if isinstance(document, dict) else []
        raise RequestError(400, 'A load request is {"model_name": NAME, "url": "/opt/ml/models/.../model"}'
                                + (f"; these keys are not accepted: {', '.join(extra)}" if extra else "") + ".")
    name, url = document["model_name"], document["url"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RequestError(400, f"model_name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                                "starting with a letter or digit.")
    if not isinstance(url, str) or not url:
        raise RequestError(400, "url must be the path of a model directory.")
    return name, url


def resolve(url: str, store: Path) -> Path:
    """The model directory `url` names, which must lie under `store` once symlinks are resolved."""
    if "://" in url or not url.startswith("/"):
        raise RequestError(400, f"url {url!r} must be an absolute path under {store}; models are not downloaded.")
    path = Path(os.path.realpath(url))
    root = Path(os.path.realpath(store))
    if root not in path.parents:
        raise RequestError(400, f"url {url!r} is not a directory under {store}.")
    if not path.is_dir():
        raise RequestError(404 if not path.exists() else 400, f"{url} is not a model directory"
                                                            + (" (it does not exist)." if not path.exists() else "."))
    return path


def check_readable(path: Path) -> None:
    user = pwd.getpwuid(os.geteuid()).pw_name
    for folder, subfolders, files in os.walk(path, onerror=_raise):
        for item, need in [(folder, os.R_OK | os.X_OK)] + [(os.path.join(folder, f), os.R_OK) for f in files]:
            if not os.access(item, need):
                raise RequestError(403, f"{item} is not readable by the model server's user {user!r}: make the "
                                        "model's files readable by all (chmod -R a+rX) or set BYOC_SERVER_USER=root.")
        subfolders.sort()


def _raise(error: OSError) -> None:
    raise RequestError(403, f"{error.filename} cannot be read by the model server: {error.strerror}.")


def check_package(path: Path) -> int:
    """The weights' size in bytes, once model.json and model.safetensors look like ours."""
    try:
        contract.load_spec(path)
        weights = contract.weights_file(path)
    except contract.ModelPackageError as error:
        raise RequestError(400, f"{path} is not a model package: {error}") from None
    try:
        from safetensors import safe_open

        with safe_open(weights, framework="numpy") as tensors:
            list(tensors.keys())
    except Exception as error:  # whatever the safetensors parser says about a damaged file
        raise RequestError(400, f"{weights} is not a safetensors file: {str(error)[:200]}") from None
    return weights.stat().st_size


def check(body: bytes, store: Path, workers: int) -> dict:
    name, url = parse(body)
    path = resolve(url, store)
    check_readable(path)
    memory.check_room(name, check_package(path), workers)
    return {"status": 200, "model_name": name, "path": str(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("/opt/ml/models"))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    try:
        answer = check(sys.stdin.buffer.read(64 * 1024 + 1), args.store, args.workers)
    except RequestError as error:
        answer = {"status": error.status, "error": error.message}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
