"""python -m ecr {ensure,push,scan,protect,uri}: the ECR half of `make push scan`.

boto3 finds region, credentials and endpoint as usual (AWS_REGION,
AWS_PROFILE, AWS_ENDPOINT_URL_ECR, ...); ECR_REGISTRY (or --registry) sends
pushes to another registry, for the loopback stand-ins only.
"""
import argparse
import json
import os
import re
import sys
from pathlib import Path

import boto3
import docker
from botocore.exceptions import BotoCoreError, ClientError

from byoc_cloud import arguments, image_protection
from byoc_cloud.calls import LaunchError
from ecr import registry, repositories, scan_gate

IMAGES_FILE = registry.ROOT / "build" / "ecr-images.json"
REPOSITORY_NAME = arguments.api("ecr", "RepositoryName")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def tag(text: str) -> str:
    if not registry.TAG.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an image tag: 1-128 letters, digits, _ . and -, "
                                         "not starting with . or -")
    return text


def image_pair(text: str) -> tuple[str, str]:
    """LOCAL_IMAGE=REPOSITORY, checked before the login."""
    local, _, repository = text.partition("=")
    if not local or not repository:
        raise argparse.ArgumentTypeError(f"expected LOCAL_IMAGE=REPOSITORY, got {text!r}")
    return local, REPOSITORY_NAME(repository)


def repository_tag(text: str) -> tuple[str, dict]:
    """REPOSITORY:TAG or REPOSITORY@sha256:DIGEST, as (repository, ECR imageId)."""
    if "@" in text:
        repository, _, digest = text.partition("@")
        if not DIGEST.fullmatch(digest):
            raise argparse.ArgumentTypeError(f"expected REPOSITORY@sha256:<64 hex digits>, got {text!r}")
        return REPOSITORY_NAME(repository), {"imageDigest": digest}
    repository, _, image_tag = text.partition(":")
    if not image_tag:
        raise argparse.ArgumentTypeError(f"expected REPOSITORY:TAG or REPOSITORY@sha256:DIGEST, got {text!r}")
    return REPOSITORY_NAME(repository), {"imageTag": tag(image_tag)}


def pushed_targets(pushed: dict) -> list[tuple[str, dict]]:
    """What push recorded, by digest: the image pushed, even if a mutable tag has moved since."""
    targets = []
    for repository, entry in pushed.items():
        digest = entry["uri"].rpartition("@")[2]
        if not DIGEST.fullmatch(digest):
            raise ValueError(f"{repository}: {entry['uri']!r} is not an image URI by digest")
        targets.append((repository, {"imageDigest": digest}))
    return targets


def image_label(repository: str, image_id: dict) -> str:
    if "imageTag" in image_id:
        return f"{repository}:{image_id['imageTag']}"
    return f"{repository}@{image_id['imageDigest']}"


def read_file(loader, path: Path, what: str):
    """loader(path), or a LaunchError that names the file and what is wrong with it."""
    try:
        return loader(path)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        if isinstance(error, FileNotFoundError) and path == IMAGES_FILE:
            raise LaunchError(f"{path} does not exist: nothing was pushed from this tree yet (make push)") from None
        raise LaunchError(f"{path}: cannot read {what} ({type(error).__name__}: {error})") from None


def pushed_images(path: Path) -> dict:
    found = json.loads(path.read_text())
    if not isinstance(found, dict):
        raise TypeError("expected an object of REPOSITORY: {uri, tags, local_image}")
    return found


def _ensure(args, ecr) -> int:
    definitions = read_file(repositories.load, args.definitions, "the definitions")
    for repo in definitions:  # all of them, before the first request
        repositories.validate(ecr, repo)
    for repo in definitions:
        changes = repositories.ensure(ecr, repo)
        print(f"{repo.name}: {', '.join(changes) if changes else 'up to date'}")
        warn_if_never_scanned(ecr, repo.name)
    return 0


def warn_if_never_scanned(ecr, repository: str) -> None:
    """The registry's scanning configuration overrides the repository's scanOnPush: say so now, not
    after the push. Without the right to read it, scan will say."""
    try:
        _, unscanned = scan_gate.scanning(ecr, repository)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("AccessDeniedException", "AccessDenied"):
            raise
        return
    if unscanned:
        print(f"warning: {unscanned}; the scan gate will fail", file=sys.stderr)


def _push(args, ecr) -> int:
    # everything that can be refused is refused before the login, ECR's first request
    pushed = read_file(pushed_images, args.output, "the pushed images") if args.output.exists() else {}
    tags = list(dict.fromkeys(args.tag or registry.default_tags(args.allow_dirty)))  # a tag once: ECR's are immutable
    client = docker.from_env()
    for local, _ in args.images:
        registry.find_local_image(client, local)
    session = registry.login(ecr, client, args.registry)
    print(f"logged in to {session.registry} as {session.auth_config['username']}")
    for local, repository in args.images:
        digest = registry.push(ecr, client, session, local, repository, tags)
        uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
        pushed[repository] = {"uri": f"{uri}@{digest}", "tags": tags, "local_image": local}
        print(f"{repository}: {uri}@{digest}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(pushed, indent=2) + "\n")
    return 0


def inspector_client():
    """Amazon Inspector, for enhanced scanning's coverage (its region is ECR's)."""
    return boto3.client("inspector2")


def _scan(args, ecr) -> int:
    targets = args.targets or read_file(lambda path: pushed_targets(pushed_images(path)), args.images_file,
                                        "the pushed images")
    allowlist = read_file(scan_gate.load_allowlist, args.allowlist, "the allowlist")
    verdicts = []
    for repository, image_id in targets:
        findings, problem = scan_gate.scan_results(ecr, repository, image_id, delay=args.poll_seconds,
                                                   timeout=args.timeout, inspector=inspector_client)
        verdict = scan_gate.evaluate(findings, allowlist)
        verdict.problem = problem
        print(verdict.report(image_label(repository, image_id)))
        verdicts.append(verdict)
    for entry in scan_gate.unused(allowlist, verdicts):
        print(f"note: allowlist entry {entry.vulnerability}{f' ({entry.package})' if entry.package else ''} "
              "let nothing through in these images; remove it if it is no longer needed")
    return 0 if all(v.passed for v in verdicts) else 1


def _protect(args, ecr) -> int:
    """Tag what each endpoint runs deployed-ENDPOINT-DIGEST, which the lifecycle policy never expires."""
    endpoints = args.endpoints or list(dict.fromkeys(
        e for repo in read_file(repositories.load, args.definitions, "the definitions") for e in repo.protect_endpoints))
    if not endpoints:
        print("no endpoints: name them, or list them under protectEndpoints in repositories.json", file=sys.stderr)
        return 2
    sagemaker = boto3.client("sagemaker")
    for endpoint in endpoints:
        for uri in image_protection.endpoint_images(sagemaker, endpoint):
            calls = image_protection.protect_calls(ecr, uri, endpoint)
            for _, _, request in calls:
                tagged = add_tag(ecr, request)
                print(f"{endpoint}: {uri} {'tagged' if tagged else 'tagged meanwhile'} {request['imageTag']}")
            if not calls:
                print(f"{endpoint}: {uri} protected already (or not in ECR)")
    return 0


def add_tag(ecr, request: dict) -> bool:
    """put_image of an image's own manifest under a new tag; False if the image took that tag meanwhile
    (a deploy of the same endpoint): ECR answers ImageAlreadyExistsException, "no changes to the
    manifest or image tag"."""
    try:
        ecr.put_image(**request)
    except ecr.exceptions.ImageAlreadyExistsException:
        return False
    return True


def _uri(args, ecr) -> int:
    pushed = read_file(pushed_images, args.images_file, "the pushed images")
    entry = pushed.get(args.repository)
    uri = entry.get("uri") if isinstance(entry, dict) else None
    if not uri:
        raise LaunchError(f"{args.images_file} has no pushed image of {args.repository!r} "
                          f"(it has: {', '.join(pushed) or 'none'}); push it with make push")
    print(uri)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ecr", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure", help="create or update the repositories in repositories.json")
    ensure.add_argument("--definitions", type=Path, default=repositories.DEFINITIONS)
    ensure.set_defaults(run=_ensure)
    push = sub.add_parser("push", help="log in, tag (version and git SHA) and push LOCAL=REPOSITORY images")
    push.add_argument("images", nargs="+", type=image_pair, metavar="LOCAL_IMAGE=REPOSITORY")
    push.add_argument("--tag", action="append", type=tag, help="tags to push (default: the version and the git SHA)")
    push.add_argument("--allow-dirty", action="store_true", help="push from a tree with uncommitted changes")
    push.add_argument("--registry", default=os.environ.get("ECR_REGISTRY") or None,
                      help="push to this host:port instead of ECR's registry (stand-ins only)")
    push.add_argument("--output", type=Path, default=IMAGES_FILE, help="where the pushed URIs are recorded")
    push.set_defaults(run=_push)
    scan = sub.add_parser("scan", help="wait for scan results and gate on them (exit 1: do not ship)")
    scan.add_argument("targets", nargs="*", type=repository_tag, metavar="REPOSITORY:TAG",
                      help="or REPOSITORY@sha256:DIGEST; default: what push recorded, by digest")
    scan.add_argument("--images-file", type=Path, default=IMAGES_FILE)
    scan.add_argument("--allowlist", type=Path, default=scan_gate.ALLOWLIST)
    scan.add_argument("--poll-seconds", type=arguments.positive, default=5)
    scan.add_argument("--timeout", type=arguments.positive, default=1800,
                      help="seconds to wait for each image's scan results (default 1800)")
    scan.set_defaults(run=_scan)
    protect = sub.add_parser("protect", help="tag what endpoints run so the lifecycle policy never expires it")
    protect.add_argument("endpoints", nargs="*", type=arguments.ENDPOINT_NAME, metavar="ENDPOINT", help="default: protectEndpoints in the definitions")
    protect.add_argument("--definitions", type=Path, default=repositories.DEFINITIONS)
    protect.set_defaults(run=_protect)
    uri = sub.add_parser("uri", help="print the pushed image URI (by digest) of a repository")
    uri.add_argument("repository", type=REPOSITORY_NAME)
    uri.add_argument("--images-file", type=Path, default=IMAGES_FILE)
    uri.set_defaults(run=_uri)
    return p


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)  # a bad name or tag is refused here, before the login
    except SystemExit as refused:  # argparse printed why (or --help)
        return refused.code
    ecr = boto3.client("ecr") if args.command != "uri" else None
    try:
        return args.run(args, ecr)
    except (registry.PushError, scan_gate.AllowlistError, repositories.DefinitionError, LaunchError,
            RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, docker.errors.DockerException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
