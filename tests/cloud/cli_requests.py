"""byoc-cloud's requests as --dry-run prints them, each validated against botocore's model of its API
(required members, types, minimums); the CLI itself checks enums, maximums and patterns
(byoc_cloud.model_check) before it prints or sends anything."""
import json

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
