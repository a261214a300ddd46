"""Docker login with ECR's authorization token, tags, and pushes through the Docker engine.

The registry is ECR's own (the token's proxy endpoint) unless a registry
override is configured: then pushes go there (Debian's docker-registry on
loopback) and each pushed manifest is registered with the ECR API by
put_image, which is what ECR does itself when a push to it completes. The
override exists for the stand-ins only; against AWS leave it unset.
"""
import base64
import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json")
INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # what docker accepts, within ECR's ImageTag


class PushError(RuntimeError):
    pass


def default_tags(allow_dirty: bool = False) -> list[str]:
    """The package version and the commit: '0.1.0' and '5d4eb83a1b2c'."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()[:12]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not TAG.fullmatch(version):  # a PEP 440 local version (0.1.0+cu128) has a '+'
        raise PushError(f"the version {version!r} in pyproject.toml is not an image tag (1-128 letters, digits, "
                        "_ . and -, not starting with . or -): change it, or pass explicit --tag values")
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


def find_local_image(client: docker.DockerClient, name: str):
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        raise PushError(f"there is no local image {name!r} to push: build it first (make build)") from None


def existing_image(ecr, repository: str, tag: str) -> tuple[str, str | None] | None:
    """(manifest digest, config digest) of what `repository:tag` holds in ECR, or None if the tag is free.

    The config digest is None for an index (a multi-platform image). A failure other than
    ImageNotFound (a KMS error, say) stops the push: what the tag holds cannot be told.
    """
    response = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                                   acceptedMediaTypes=list(MANIFEST_TYPES + INDEX_TYPES))
    if response["images"]:
        image = response["images"][0]
        return image["imageId"]["imageDigest"], json.loads(image["imageManifest"]).get("config", {}).get("digest")
    for failure in response.get("failures", []):
        if failure.get("failureCode") != "ImageNotFound":
            raise PushError(f"cannot tell what tag {tag!r} holds in ECR repository {repository} "
                            f"({failure.get('failureCode')}: {failure.get('failureReason', '')}); nothing was pushed")
    return None


def holds(existing: tuple[str, str | None], image) -> bool:
    """Whether ECR's image is this local one: its config (the classic image store's image ID), or its
    manifest (the containerd image store's image ID, or a digest this image was pushed under)."""
    digest, config = existing
    pushed_as = {d.rpartition("@")[2] for d in image.attrs.get("RepoDigests", [])}
    return image.id in (config, digest) or digest in pushed_as


def push(ecr, client: docker.DockerClient, session: Login, local_image: str, repository: str,
         tags: list[str], log=print) -> str:
    """Tag and push local_image as repository:tag for each tag; returns the manifest digest.

    A tag is never moved, whatever the repository's tag mutability: a tag that already names a
    different image stops the push before any upload, naming the tag, the repository and both
    images. A tag that already names this image is left as it is (pushing it again would fail
    with an immutable tag).
    """
    image = find_local_image(client, local_image)
    target = f"{session.registry}/{repository}"
    todo = []
    for tag in tags:
        existing = existing_image(ecr, repository, tag)
        if existing is None:
            todo.append(tag)
        elif holds(existing, image):
            log(f"{repository}:{tag} already holds {local_image} ({image.short_id}); skipped")
        else:
            raise PushError(
                f"tag {tag!r} already exists in ECR repository {repository} for another image "
                f"({existing[0][:19]}), and push never moves a tag: {local_image} ({image.id[:19]}) "
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
