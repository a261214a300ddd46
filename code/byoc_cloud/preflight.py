"""`byoc-cloud check` and the same check before every launch: can this image run on that instance?

The image's facts come from its byoc.* labels (set by make build from its own torch), its size
and its platform: from the local Docker engine when it has the image (also the local image
`python -m ecr push` recorded for a pushed URI), else from ECR (describe_images for the size, the
manifest's config blob for the labels and the architecture; of a multi-platform index, the
manifest for the instance's platform). gpu_matrix.plan() decides. Commands
call preflight() before their first create call; --skip-check skips it.
"""
import argparse
import json
import os
import urllib.request
from pathlib import Path

from byoc import contract
from byoc_cloud import arguments
from byoc_cloud.arguments import ECR_URI
from byoc_cloud.calls import LaunchError
from byoc_cloud.gpu_matrix import MODES, ImageFacts, Verdict, has_nvidia_gpu, host_platform, plan

PUSHED = Path("build/ecr-images.json")  # what `python -m ecr push` recorded (run from the repository root)


def facts_from_labels(reference: str, labels: dict, size: int | None, compressed: bool,
                      platform: str = "") -> ImageFacts:
    """platform: the image config's architecture (amd64, arm64), which Graviton and Grace hosts need."""
    if contract.LABEL_CUDA not in labels:
        raise LaunchError(f"image {reference} has no {contract.LABEL_CUDA} label: was it built with `make build`? "
                          "Rebuild it, or pass --skip-check.")
    archs = tuple(a for a in labels.get(contract.LABEL_ARCHS, "").split(",") if a)
    return ImageFacts(reference, labels[contract.LABEL_CUDA], archs, labels.get(contract.LABEL_COMPAT, ""), size,
                      compressed, platform)


def _local_name(image: str) -> str:
    """The local image `python -m ecr push` pushed as `image` (by its URI), else `image` itself."""
    try:
        pushed = json.loads(PUSHED.read_text())
    except (OSError, ValueError):
        return image
    return next((entry.get("local_image", image) for entry in pushed.values() if entry.get("uri") == image), image)


def from_engine(image: str) -> ImageFacts | None:
    try:
        import docker

        found = docker.from_env().images.get(_local_name(image))
    except Exception:  # no engine, or not there: ECR is the other place to look
        return None
    return facts_from_labels(image, found.labels or {}, found.attrs.get("Size"), compressed=False,
                             platform=found.attrs.get("Architecture") or "")


def _config_blob(ecr, repository: str, registry_id: str, digest: str) -> dict:
    """The image config (labels live there): through ECR's layer URL, or the stand-in registry."""
    standin = os.environ.get("ECR_REGISTRY")
    if standin:  # loopback stand-ins only (ecr/standins.py), as for pushes
        url = f"http://{standin}/v2/{repository}/blobs/{digest}"
    else:
        url = ecr.get_download_url_for_layer(registryId=registry_id, repositoryName=repository,
                                             layerDigest=digest)["downloadUrl"]
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as error:  # urllib's errors are OSErrors; a blob that is not JSON
        raise LaunchError(f"cannot read the configuration (labels) of {repository}@{digest} from the registry: "
                          f"{error}. Pass --skip-check to launch without the check.") from None


def _platform_manifest(ecr, where: dict, image: str, manifest: dict, platform: str) -> dict:
    """An image index (buildx --platform linux/amd64,linux/arm64) has no config of its own: the
    manifest of its linux/`platform` image, the one the instance would pull."""
    if "manifests" not in manifest:
        return manifest
    entries = {(entry.get("platform") or {}).get("architecture"): entry["digest"] for entry in manifest["manifests"]
               if (entry.get("platform") or {}).get("os") == "linux"}
    if platform not in entries:
        raise LaunchError(f"image {image} is a multi-platform image index with no linux/{platform} image, which "
                          f"the instance type needs (it has {', '.join(sorted(map(str, entries))) or 'no linux image'})")
    found = ecr.batch_get_image(**where, imageIds=[{"imageDigest": entries[platform]}])["images"][0]
    return json.loads(found["imageManifest"])


def from_ecr(image: str, ecr, platform: str = "amd64") -> ImageFacts:
    match = ECR_URI.fullmatch(image)
    if not match:
        raise LaunchError(f"image {image!r} is neither in the local Docker engine nor an ECR URI "
                          "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG or @sha256:...)")
    image_id = {"imageDigest": match["digest"]} if match["digest"] else {"imageTag": match["tag"] or "latest"}
    where = {"registryId": match["account"], "repositoryName": match["repository"]}
    detail = ecr.describe_images(**where, imageIds=[image_id])["imageDetails"][0]
    manifest = json.loads(ecr.batch_get_image(**where, imageIds=[image_id])["images"][0]["imageManifest"])
    manifest = _platform_manifest(ecr, where, image, manifest, platform)
    config = _config_blob(ecr, match["repository"], match["account"], manifest["config"]["digest"])
    labels = (config.get("config") or {}).get("Labels") or {}
    return facts_from_labels(image, labels, detail.get("imageSizeInBytes"), compressed=True,
                             platform=config.get("architecture") or "")


def image_facts(image: str, clients, instance_type: str | None) -> ImageFacts:
    """instance_type picks the image of a multi-platform index (serverless endpoints run x86)."""
    platform = host_platform(instance_type) if instance_type else "amd64"
    return from_engine(image) or from_ecr(image, clients["ecr"], platform)


def same_region(args, clients, launching: bool) -> None:
    """SageMaker pulls an image from ECR, in its own region (a local image serves `check` and --dry-run
    rehearsals)."""
    match, region = ECR_URI.fullmatch(args.image), clients["sagemaker"].meta.region_name
    if launching and not match and not getattr(args, "dry_run", False):
        raise LaunchError(f"image {args.image!r} is not an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/"
                          "REPOSITORY:TAG or @sha256:...), which is what SageMaker pulls: push it (make push) "
                          "and pass `python -m ecr uri REPOSITORY`")
    if match and match["region"] != region:
        raise LaunchError(f"image {args.image} is in {match['region']}, and SageMaker here is in {region}: "
                          f"push the image to {region} (python -m ecr push), or set AWS_REGION={match['region']}")


def device_fits(args, mode: str, instance_type: str | None) -> None:
    """--env BYOC_DEVICE=cuda makes the container fail where there is no GPU."""
    device = dict(pair.partition("=")[::2] for pair in getattr(args, "env", [])).get(contract.DEVICE_SETTING)
    if device == "cuda" and (mode == "serverless" or not (instance_type and has_nvidia_gpu(instance_type))):
        raise LaunchError(f"--env {contract.DEVICE_SETTING}=cuda on {instance_type or 'serverless'}, which has no "
                          f"GPU: the container would fail to start; leave it out ({contract.DEVICE_SETTING}=auto)")


def preflight(args, clients, mode: str, instance_type: str | None, launching: bool = True) -> Verdict:
    """The check, printed; raises LaunchError on a refusal. args.skip_check skips it, not the region
    or the device."""
    device_fits(args, mode, instance_type)
    same_region(args, clients, launching)
    if getattr(args, "skip_check", False):
        print("check skipped (--skip-check)")
        return Verdict()
    verdict = plan(instance_type, mode, image_facts(args.image, clients, instance_type))
    print(verdict.report(f"{args.image} on {instance_type or 'serverless'} ({mode})"))
    if not verdict.ok:
        raise LaunchError(f"the check refused {args.image} on {instance_type or 'serverless'} ({mode}): "
                          + " ".join(verdict.refusals))
    return verdict


def check(args, clients, prices) -> list:
    if args.mode == "serverless":
        if args.instance_type:
            raise LaunchError("--instance-type does not apply to --mode serverless: SageMaker picks the hardware")
    elif not args.instance_type:
        raise LaunchError(f"--instance-type is required for --mode {args.mode}")
    else:
        try:
            arguments.instance_type(args.mode)(args.instance_type)
        except argparse.ArgumentTypeError as error:
            raise LaunchError(f"--instance-type for --mode {args.mode}: {error}") from None
    preflight(args, clients, args.mode, args.instance_type, launching=False)
    return []


def add_skip_check(command) -> None:
    command.add_argument("--skip-check", action="store_true",
                         help="launch without checking the image against the instance type (byoc-cloud check)")


def add_commands(sub, common) -> None:
    command = sub.add_parser("check", parents=[common], help="can this image run on that instance type?")
    command.add_argument("--image", required=True, help="a local image or an ECR image URI")
    command.add_argument("--instance-type", help="e.g. ml.g5.xlarge (not for --mode serverless)")
    command.add_argument("--mode", choices=MODES, default="realtime", help="what will run the image (default realtime)")
    command.set_defaults(run=check)

