"""Docker login with ECR's authorization token, tags, and pushes through the Docker engine.

The registry is ECR's own (the token's proxy endpoint) unless a registry
override is configured: then pushes go there (Debian's docker-registry on
loopback) and each pushed manifest is registered with the ECR API by
put_image, which is what ECR does itself when a push to it completes. The
override exists for the stand-ins only; against AWS leave it unset.
"""
import base64
import json
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json")


class PushError(RuntimeError):
    pass


def default_tags(allow_dirty: bool = False) -> list[str]:
    """The package version and the commit: '0.1.0' and '5d4eb83a1b2c'."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()[:12]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty and not allow_dirty:
        raise PushError("the working tree has uncommitted changes, so the commit tag would not describe the image: "
                        "commit first, pass explicit --tag values, or --allow-dirty (tags '<sha>-dirty')")
    return [version, f"{sha}-dirty" if dirty else sha]


@dataclass
class Login:
    registry: str        # host[:port] that receives the pushes
    auth_config: dict    # for the Docker engine
    standin: bool        # a registry override: mirror pushed manifests into the ECR API


def login(ecr, client: docker.DockerClient, registry_override: str | None = None) -> Login:
    """docker login with the token from get_authorization_token; the credentials stay in this process
    (no ~/.docker/config.json is written)."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    username, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    registry = registry_override or data["proxyEndpoint"].removeprefix("https://")
    auth = {"username": username, "password": password, "serveraddress": registry}
    client.login(username=username, password=password, registry=registry, reauth=True)
    return Login(registry, auth, standin=bool(registry_override))


def _existing_config_digest(ecr, repository: str, tag: str) -> str | None:
    """The config digest (= the local image ID) of what `repository:tag` holds in ECR, or None."""
    images = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                                 acceptedMediaTypes=list(MANIFEST_TYPES))["images"]
    if not images:
        return None
    return json.loads(images[0]["imageManifest"])["config"]["digest"]


def push(ecr, client: docker.DockerClient, session: Login, local_image: str, repository: str,
         tags: list[str], log=print) -> str:
    """Tag and push local_image as repository:tag for each tag; returns the manifest digest.

    Tags are immutable: a tag that already names a different image stops the push before any
    upload, naming the tag, the repository and both images. A tag that already names this
    image is left as it is.
    """
    image = client.images.get(local_image)
    target = f"{session.registry}/{repository}"
    todo = []
    for tag in tags:
        existing = _existing_config_digest(ecr, repository, tag)
        if existing is None:
            todo.append(tag)
        elif existing == image.id:
            log(f"{repository}:{tag} already holds {local_image} ({image.short_id}); skipped")
        else:
            raise PushError(
                f"tag {tag!r} already exists in ECR repository {repository} for another image (config "
                f"{existing[:19]}), and the repository's tags are IMMUTABLE: {local_image} ({image.id[:19]}) "
                f"cannot take it. Bump the version in pyproject.toml or push from a new commit.")
    digest = None
    for tag in todo:
        image.tag(target, tag)
        try:
            for line in client.api.push(target, tag, auth_config=session.auth_config, stream=True, decode=True):
                if "error" in line:
                    raise PushError(f"pushing {target}:{tag}: {line['error']}")
                digest = line.get("aux", {}).get("Digest", digest)
                if line.get("status") in ("Pushed", "Layer already exists", "Mounted from"):
                    log(f"  {target}:{tag} layer {line.get('id', '?')}: {line['status']}")
        finally:
            client.images.remove(f"{target}:{tag}", noprune=True)  # keep the engine's tag list clean
        log(f"pushed {local_image} as {target}:{tag} ({digest})")
        if session.standin:
            _register_manifest(ecr, session.registry, repository, tag)
    if digest is None:  # everything was there already
        digest = ecr.describe_images(repositoryName=repository,
                                     imageIds=[{"imageTag": tags[0]}])["imageDetails"][0]["imageDigest"]
    return digest


def _register_manifest(ecr, registry: str, repository: str, tag: str) -> None:
    """Stand-in only: tell the ECR API (moto) about a manifest the loopback registry received."""
    response = requests.get(f"http://{registry}/v2/{repository}/manifests/{tag}",
                            headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=30)
    response.raise_for_status()
    try:
        ecr.put_image(repositoryName=repository, imageManifest=response.text, imageTag=tag,
                      imageManifestMediaType=response.headers["Content-Type"],
                      imageDigest=response.headers["Docker-Content-Digest"])
    except ecr.exceptions.ImageTagAlreadyExistsException as error:
        raise PushError(f"tag {tag!r} already exists in ECR repository {repository} and tags are IMMUTABLE: "
                        f"{error}") from error
