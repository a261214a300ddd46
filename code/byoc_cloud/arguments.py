"""argparse types for byoc-cloud's flags, so that a bad value is refused while the command line is
parsed: before any AWS call, by the flag's name (argparse adds it), with the rule it breaks.

Numbers are finite: `nan` and `inf` parse as floats but mean nothing as hours or timeouts. Counts
and durations are positive, or at least zero where zero means something (a random seed). Flags
whose range depends on other flags (a hosting mode's limits, a roll's percentages) are the
command's to check, with a message that says how they depend. Names, ARNs, URIs and instance types follow the AWS API model
of the request member they fill (botocore's shapes, as model_check reads them), so the CLI and the
service agree on what is valid.
"""
import argparse
import math
import re
from functools import lru_cache

import botocore.session

from byoc_cloud import model_check

# An ECR image: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY, then :TAG, @sha256:DIGEST or both.
ECR_URI = re.compile(r"(?P<registry>(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?)/"
                     r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[\w.-]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?")


def _number(text: str, kind, least: float, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value) or value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be {what}")
    return value


def count(text: str) -> int:
    """An integer of at least 1: instances, trials, epochs, gigabytes."""
    return _number(text, int, 1, "a whole number of at least 1")


def count_or_zero(text: str) -> int:
    """An integer of at least 0."""
    return _number(text, int, 0, "a whole number of at least 0")


def finite(text: str) -> float:
    """A finite number; its range is the command's to check (it depends on other flags)."""
    return _number(text, float, -math.inf, "a finite number")


# S3's bucket naming rules; the API models allow any s3:// or https:// URL.
S3_PATTERN = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")


def s3_uri(text: str) -> str:
    if not S3_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected s3://bucket/prefix, the bucket 3-63 lower-case "
                                         "letters, digits, dots and hyphens")
    return text


def positive(text: str) -> float:
    """A finite number above 0: hours, seconds, targets, thresholds."""
    value = _number(text, float, 0, "a finite number above 0")
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
    return value


@lru_cache(maxsize=None)
def _shape(service: str, name: str):
    return botocore.session.get_session().get_service_model(service).shape_for(name)


def api(service: str, shape: str):
    """A string that the AWS API model's `shape` of `service` allows (length, pattern, enum)."""

    def parse(text: str) -> str:
        try:
            model_check.check(text, _shape(service, shape), shape)
        except model_check.ModelViolation as violation:
            raise argparse.ArgumentTypeError(str(violation)) from None
        return text

    parse.__name__ = shape  # argparse names the type in some of its messages
    return parse


# The members byoc-cloud's flags fill, by their SageMaker shapes.
JOB_NAME = api("sagemaker", "TrainingJobName")  # also a transform job's and the models named after them
ENDPOINT_NAME = api("sagemaker", "EndpointName")
ROLE_ARN = api("sagemaker", "RoleArn")
MODEL_DATA_URL = api("sagemaker", "Url")
IMAGE = api("sagemaker", "ContainerImage")  # an ECR URI to launch; a local image for --dry-run rehearsals
TUNING_JOB_NAME = api("sagemaker", "HyperParameterTuningJobName")
TRAINING_INSTANCE = api("sagemaker", "TrainingInstanceType")
HOSTING_INSTANCE = api("sagemaker", "ProductionVariantInstanceType")
TRANSFORM_INSTANCE = api("sagemaker", "TransformInstanceType")
