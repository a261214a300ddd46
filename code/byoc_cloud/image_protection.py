"""Deployed images are protected from ECR's lifecycle policy by a tag: deployed-<endpoint>-<digest>.

ECR's lifecycle rules can only expire; a rule protects by matching first: an image that matches
a higher-priority rule's tag pattern can never be expired by a lower one. The repositories'
policy (ecr/repositories.py) matches `deployed-*` ahead of the rule that expires old commit
tags, so tagging what an endpoint runs keeps it pullable for every later scale-out, whatever
is pushed after it. Tags are immutable, but an existing image takes new tags (put_image with
its own manifest), and one tag per endpoint and image keeps a roll from moving any tag.

`byoc-cloud deploy` and `roll` add the tag before they create the model; `python -m ecr protect`
tags what listed endpoints already run.
"""
import sys

from botocore.exceptions import ClientError

from byoc_cloud.arguments import ECR_URI
from byoc_cloud.calls import Call, LaunchError

PREFIX = "deployed-"
PATTERN = f"{PREFIX}*"  # the lifecycle policy's tagPatternList entry
MANIFEST_TYPES = ["application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"]


def tag_for(endpoint: str, digest: str) -> str:
    return f"{PREFIX}{endpoint}-{digest.removeprefix('sha256:')[:12]}"


def protect_calls(ecr, image_uri: str, endpoint: str) -> list[Call]:
    """The put_image that tags image_uri for endpoint; none if it is tagged already or not in ECR."""
    found = ECR_URI.fullmatch(image_uri)
    if not found:
        print(f"{image_uri} is not an ECR image: ECR's lifecycle policy cannot expire it, nothing to protect")
        return []
    image_id = {"imageDigest": found["digest"]} if found["digest"] else {"imageTag": found["tag"] or "latest"}
    where = {"registryId": found["account"], "repositoryName": found["repository"]}
    try:
        response = ecr.batch_get_image(**where, imageIds=[image_id], acceptedMediaTypes=MANIFEST_TYPES)
        described = ecr.describe_images(**where, imageIds=[image_id])["imageDetails"] if response["images"] else []
    except ClientError as error:
        if error.response["Error"]["Code"] == "RepositoryNotFoundException":
            raise LaunchError(f"{image_uri}: ECR has no repository {found['repository']} in {found['account']}") from None
        if error.response["Error"]["Code"] in ("AccessDeniedException", "AccessDenied"):
            print(f"warning: cannot read {image_uri} from ECR ({error.response['Error']['Code']}), so it is not "
                  f"tagged {PATTERN}: ECR's lifecycle policy may expire it while {endpoint} runs it", file=sys.stderr)
            return []
        raise
    if not response["images"]:
        raise LaunchError(f"{image_uri}: no such image in ECR repository {found['repository']}")
    image = response["images"][0]
    digest = image["imageId"]["imageDigest"]
    tag = tag_for(endpoint, digest)
    if tag in described[0].get("imageTags", []):
        return []
    return [("ecr", "put_image", {**where, "imageManifest": image["imageManifest"], "imageDigest": digest,
                                  "imageManifestMediaType": image["imageManifestMediaType"], "imageTag": tag})]


def endpoint_images(sagemaker, endpoint: str) -> list[str]:
    """The image URIs every model of the endpoint's live config runs."""
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    images = []
    for variant in config["ProductionVariants"]:
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        containers = [model["PrimaryContainer"]] if "PrimaryContainer" in model else model.get("Containers", [])
        images += [c["Image"] for c in containers if c.get("Image")]
    return list(dict.fromkeys(images))
