"""byoc-cloud's requests as --dry-run prints them, each validated against botocore's model of its API
(required members, types, minimums); the CLI itself checks enums, maximums and patterns
(byoc_cloud.model_check) before it prints or sends anything."""
import json
import uuid

import boto3
from botocore.validate import validate_parameters

from byoc_cloud import cli as launch

ROLE = "arn:aws:iam::123456789012:role/byoc-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/byoc-{}@sha256:" + "a" * 64


def dry_run(capsys, *argv) -> tuple[list[str], list[dict]]:
    """The estimate lines and the requests that --dry-run prints, each checked against the API model."""
    assert launch.main(["--dry-run", *argv]) == 0
    out = capsys.readouterr().out
    decoder, text, requests, lines = json.JSONDecoder(), out, [], []
    while text.strip():
        text = text.lstrip()
        if text.startswith("{"):
            obj, end = decoder.raw_decode(text)
            requests.append(obj)
            text = text[end:]
        else:
            line, _, text = text.partition("\n")
            lines.append(line)
    for r in requests:
        client = boto3.client(r["client"])
        model = client.meta.service_model.operation_model(client.meta.method_to_api_mapping[r["operation"]])
        validate_parameters(r["request"], model.input_shape)  # raises on a malformed request
    return lines, requests


def ecr_image(repository: str, tag: str) -> str:
    """An image (a manifest with one layer of its own) pushed to moto's ECR; its URI by digest."""
    ecr = boto3.client("ecr")
    try:
        ecr.create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE")
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                   "digest": "sha256:" + "1" * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 3,
                    "digest": "sha256:" + uuid.uuid4().hex * 2}]})
    digest = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)["image"]["imageId"]["imageDigest"]
    uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
    return f"{uri}@{digest}"
