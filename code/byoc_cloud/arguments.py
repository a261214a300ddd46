"""argparse types for byoc-cloud's flags, so that a bad value is refused while the command line is
parsed: before any AWS call, by the flag's name (argparse adds it), with the rule it breaks.

Numbers are finite: `nan` and `inf` parse as floats but mean nothing as hours or timeouts. Counts
and durations are positive, or at least zero where zero means something (a random seed). Flags
whose range depends on other flags (a hosting mode's limits, a roll's percentages) are the
command's to check, with a message that says how they depend. Names, ARNs, URIs and instance types follow the AWS API model
of the request member they fill (botocore's shapes, as model_check reads them), so the CLI and the
service agree on what is valid. Instance types are taken exactly as SageMaker spells them: a
near miss (ML.G5.XLARGE, g5.xlarge, spaces) is refused with the spelling to use rather than
corrected, so that what runs is what the command line says.
"""
import argparse
import math
import re
from functools import lru_cache

import botocore.session

from byoc_cloud import model_check
from byoc_cloud.gpu_matrix import family_of

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
IMAGE = api("sagemaker", "ContainerImage")  # an ECR URI to launch; a local image for --dry-run rehearsals
TUNING_JOB_NAME = api("sagemaker", "HyperParameterTuningJobName")
_URL = api("sagemaker", "Url")


def MODEL_DATA_URL(text: str) -> str:
    """A model.tar.gz in S3: ModelDataUrl "must point to a single gzip compressed tar archive (.tar.gz
    suffix)" (CreateModel's reference); a prefix or a .zip would fail only as the endpoint starts."""
    _URL(text)  # s3:// or an https:// S3 address
    if not text.endswith(".tar.gz") or (text.startswith("s3://") and not S3_PATTERN.fullmatch(text)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected s3://bucket/.../model.tar.gz, the archive the training "
                                         "job wrote (SageMaker's ModelDataUrl is one .tar.gz)")
    return text


# The instance types each mode may name: the enum of the request member they fill (tuning jobs' trials
# are training jobs), so that types botocore gains are taken and types a mode lacks are refused.
INSTANCE_SHAPES = {"training": "TrainingInstanceType", "realtime": "ProductionVariantInstanceType",
                   "async": "ProductionVariantInstanceType", "batch": "TransformInstanceType"}
FOR = {"training": "training and tuning jobs", "realtime": "endpoints", "async": "endpoints",
       "batch": "batch transform jobs"}
SDK_LOCAL_MODE = ("local", "local_gpu")  # the SageMaker Python SDK's names for running on this machine


def offered(mode: str) -> tuple[str, ...]:
    return tuple(_shape("sagemaker", INSTANCE_SHAPES[mode]).enum)


def offered_families() -> dict[str, set[str]]:
    """{mode: {"ml.g5", ...}}: the families each mode takes, for gpu_matrix's README table."""
    return {mode: {family_of(t) for t in offered(mode)} for mode in INSTANCE_SHAPES}


def _families(types) -> str:
    return ", ".join(sorted({family_of(t) for t in types}))


def _why_not(text: str, mode: str) -> str:
    """Why `text` is no instance type for `mode`: a misspelling (with the spelling to use), another
    mode's type, a size the family lacks, or a name SageMaker does not know; each with what is allowed."""
    allowed, takes = offered(mode), f"{FOR[mode]} take {_families(offered(mode))}"
    stripped = text.strip().lower()
    if not stripped:
        return f"an empty instance type: {takes}"
    if stripped in SDK_LOCAL_MODE:
        return (f"{text!r} is the SageMaker Python SDK's local mode (README: Rehearse with the SageMaker SDK's "
                "local mode); byoc-cloud launches on SageMaker, whose " + takes)
    spelled = stripped if stripped.startswith("ml.") else f"ml.{stripped}"
    if spelled in allowed:
        return f"{text!r} is spelled {spelled!r} in SageMaker (lower case, with the ml. prefix)"
    elsewhere = [m for m in INSTANCE_SHAPES if spelled in offered(m)]
    if elsewhere:
        return f"{spelled} is offered for {FOR[elsewhere[0]]}, not {FOR[mode]}, which take {_families(allowed)}"
    sizes = [t.split(".", 2)[2] for t in allowed if family_of(t) == family_of(spelled)]
    if sizes:
        return f"{text!r}: {family_of(spelled)} for {FOR[mode]} comes in the sizes {', '.join(sizes)}"
    return f"{text!r} is not a SageMaker instance type; {takes}"


def instance_type(mode: str):
    """--instance-type for a mode: one of the types its request member's enum allows."""

    def parse(text: str) -> str:
        if text not in offered(mode):
            raise argparse.ArgumentTypeError(_why_not(text, mode))
        return text

    parse.__name__ = INSTANCE_SHAPES[mode]
    return parse


TRAINING_INSTANCE = instance_type("training")
HOSTING_INSTANCE = instance_type("realtime")
TRANSFORM_INSTANCE = instance_type("batch")
