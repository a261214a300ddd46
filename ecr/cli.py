"""python -m ecr {ensure,push,scan,protect,uri}: the ECR half of `make push scan`.

boto3 finds region, credentials and endpoint as usual (AWS_REGION,
AWS_PROFILE, AWS_ENDPOINT_URL_ECR, ...); ECR_REGISTRY (or --registry) sends
pushes to another registry, for the loopback stand-ins only.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import boto3
import docker
from botocore.exceptions import BotoCoreError, ClientError

from byoc_cloud import image_protection
from byoc_cloud.calls import LaunchError
from ecr import registry, repositories, scan_gate

IMAGES_FILE = registry.ROOT / "build" / "ecr-images.json"


def _ensure(args, ecr) -> int:
    for repo in repositories.load(args.definitions):
        changes = repositories.ensure(ecr, repo)
        print(f"{repo.name}: {', '.join(changes) if changes else 'up to date'}")
    return 0


def _push(args, ecr) -> int:
    client = docker.from_env()
    session = registry.login(ecr, client, args.registry)
    print(f"logged in to {session.registry} as {session.auth_config['username']}")
    tags = args.tag or registry.default_tags(args.allow_dirty)
    pushed = json.loads(args.output.read_text()) if args.output.exists() else {}
    for pair in args.images:
        local, _, repository = pair.partition("=")
        if not repository:
            raise SystemExit(f"expected LOCAL_IMAGE=REPOSITORY, got {pair!r}")
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
    targets = [t.partition(":")[::2] for t in args.targets] or [
        (repo, entry["tags"][0]) for repo, entry in json.loads(args.images_file.read_text()).items()]
    allowlist = scan_gate.load_allowlist(args.allowlist)
    passed = True
    for repository, tag in targets:
        findings, problem = scan_gate.scan_results(ecr, repository, tag, delay=args.poll_seconds,
                                                   timeout=args.timeout, inspector=inspector_client)
        verdict = scan_gate.evaluate(findings, allowlist)
        verdict.problem = problem
        print(verdict.report(f"{repository}:{tag}"))
        passed &= verdict.passed
    return 0 if passed else 1


def _protect(args, ecr) -> int:
    """Tag what each endpoint runs deployed-ENDPOINT-DIGEST, which the lifecycle policy never expires."""
    endpoints = args.endpoints or list(dict.fromkeys(
        e for repo in repositories.load(args.definitions) for e in repo.protect_endpoints))
    if not endpoints:
        print("no endpoints: name them, or list them under protectEndpoints in repositories.json", file=sys.stderr)
        return 2
    sagemaker = boto3.client("sagemaker")
    for endpoint in endpoints:
        for uri in image_protection.endpoint_images(sagemaker, endpoint):
            calls = image_protection.protect_calls(ecr, uri, endpoint)
            for _, _, request in calls:
                ecr.put_image(**request)
                print(f"{endpoint}: {uri} tagged {request['imageTag']}")
            if not calls:
                print(f"{endpoint}: {uri} protected already (or not in ECR)")
    return 0


def _uri(args, ecr) -> int:
    print(json.loads(args.images_file.read_text())[args.repository]["uri"])
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ecr", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure", help="create or update the repositories in repositories.json")
    ensure.add_argument("--definitions", type=Path, default=repositories.DEFINITIONS)
    ensure.set_defaults(run=_ensure)
    push = sub.add_parser("push", help="log in, tag (version and git SHA) and push LOCAL=REPOSITORY images")
    push.add_argument("images", nargs="+", metavar="LOCAL_IMAGE=REPOSITORY")
    push.add_argument("--tag", action="append", help="tags to push (default: the version and the git SHA)")
    push.add_argument("--allow-dirty", action="store_true", help="push from a tree with uncommitted changes")
    push.add_argument("--registry", default=os.environ.get("ECR_REGISTRY") or None,
                      help="push to this host:port instead of ECR's registry (stand-ins only)")
    push.add_argument("--output", type=Path, default=IMAGES_FILE, help="where the pushed URIs are recorded")
    push.set_defaults(run=_push)
    scan = sub.add_parser("scan", help="wait for scan results and gate on them (exit 1: do not ship)")
    scan.add_argument("targets", nargs="*", metavar="REPOSITORY:TAG", help="default: what push recorded")
    scan.add_argument("--images-file", type=Path, default=IMAGES_FILE)
    scan.add_argument("--allowlist", type=Path, default=scan_gate.ALLOWLIST)
    scan.add_argument("--poll-seconds", type=float, default=5)
    scan.add_argument("--timeout", type=float, default=1800,
                      help="seconds to wait for each image's scan results (default 1800)")
    scan.set_defaults(run=_scan)
    protect = sub.add_parser("protect", help="tag what endpoints run so the lifecycle policy never expires it")
    protect.add_argument("endpoints", nargs="*", metavar="ENDPOINT", help="default: protectEndpoints in the definitions")
    protect.add_argument("--definitions", type=Path, default=repositories.DEFINITIONS)
    protect.set_defaults(run=_protect)
    uri = sub.add_parser("uri", help="print the pushed image URI (by digest) of a repository")
    uri.add_argument("repository")
    uri.add_argument("--images-file", type=Path, default=IMAGES_FILE)
    uri.set_defaults(run=_uri)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    ecr = boto3.client("ecr") if args.command != "uri" else None
    try:
        return args.run(args, ecr)
    except (registry.PushError, scan_gate.AllowlistError, LaunchError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
