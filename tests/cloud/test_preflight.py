"""byoc-cloud check, and the same check before train and deploy: image labels against instance types.

The images are labelled stand-ins pushed to moto's ECR and the loopback registry (conftest.pushed):
the check reads their labels from the manifest's config blob, as it does from ECR. botocore's
validator ignores enums, so the AMI values are checked against the service model's own list."""
import json

import boto3
import docker
import pytest

from byoc_cloud import cli
from cli_requests import ROLE, dry_run, ecr_image
from support import SERVING_IMAGE

DEPLOY = ["deploy", "--role", ROLE, "--endpoint", "byoc-check-ep", "--model-data", "s3://bucket/model.tar.gz"]


def check(capsys, *argv) -> tuple[int, str]:
    code = cli.main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def ami_enum() -> list[str]:
    model = boto3.client("sagemaker", region_name="us-east-1").meta.service_model
    return model.shape_for("ProductionVariantInferenceAmiVersion").enum


def test_a_cpu_instance_is_fine_with_a_warning(launch_env, capsys):
    code, out = check(capsys, "--image", launch_env["serving"], "--instance-type", "ml.m5.xlarge")
    assert code == 0 and ": OK" in out and "warning: ml.m5.xlarge has no NVIDIA GPU" in out


@pytest.mark.parametrize("instance_type, mode, says", [
    ("ml.g5.xlarge", "realtime", "InferenceAmiVersion: al2-ami-sagemaker-inference-gpu-2-1"),
    ("ml.g4dn.xlarge", "async", "InferenceAmiVersion: al2-ami-sagemaker-inference-gpu-2-1"),
    ("ml.g6.xlarge", "realtime", "SageMaker's default driver on ml.g6 (535) runs CUDA 12.8"),
    ("ml.p3.2xlarge", "batch", "TransformAmiVersion: al2-ami-sagemaker-batch-gpu-535"),
    ("ml.p4d.24xlarge", "training", "does not document training hosts' drivers"),
])
def test_supported_gpus_get_the_ami_they_need(launch_env, capsys, instance_type, mode, says):
    code, out = check(capsys, "--image", launch_env["serving"], "--instance-type", instance_type, "--mode", mode)
    assert code == 0 and ": OK" in out and says in out, out


@pytest.mark.parametrize("instance_type, mode, says", [
    ("ml.p3.2xlarge", "realtime", "compute capability 7.0 (sm_70); the image's torch has kernels for sm_75"),
    ("ml.g5.xlarge", "batch", "no TransformAmiVersion brings R580"),
    ("ml.p2.xlarge", "realtime", "a GPU instance the kit has no row for"),
])
def test_unsupported_targets_are_refused_before_any_launch(launch_env, capsys, instance_type, mode, says):
    code, out = check(capsys, "--image", launch_env["cuda13"], "--instance-type", instance_type, "--mode", mode)
    assert code == 2 and "REFUSED" in out and says in out, out


def test_deploy_sends_the_ami_for_gpus_whose_default_driver_is_too_old(launch_env, capsys):
    _, requests = dry_run(capsys, *DEPLOY, "--image", launch_env["serving"], "--instance-type", "ml.g4dn.xlarge")
    [variant] = next(r["request"] for r in requests if r["operation"] == "create_endpoint_config")["ProductionVariants"]
    assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-2-1" in ami_enum()
    _, requests = dry_run(capsys, *DEPLOY, "--image", launch_env["serving"], "--instance-type", "ml.m5.xlarge")
    [variant] = next(r["request"] for r in requests if r["operation"] == "create_endpoint_config")["ProductionVariants"]
    assert "InferenceAmiVersion" not in variant


def test_deploy_really_creates_the_variant_with_its_ami(launch_env, capsys):
    assert cli.main(["--wait-delay", "0.1", *DEPLOY, "--endpoint", "byoc-check-g4dn", "--image", launch_env["serving"],
                     "--instance-type", "ml.g4dn.xlarge"]) == 0
    sagemaker = boto3.client("sagemaker")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName="byoc-check-g4dn")["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-2-1"


def test_a_refused_deploy_calls_nothing(launch_env, capsys):
    code = cli.main([*DEPLOY, "--endpoint", "byoc-check-refused", "--image", launch_env["cuda13"],
                     "--instance-type", "ml.p3.2xlarge"])
    assert code == 2 and "the check refused" in capsys.readouterr().err
    names = [e["EndpointName"] for e in boto3.client("sagemaker").list_endpoints()["Endpoints"]]
    assert "byoc-check-refused" not in names


def test_skip_check_and_images_without_labels(launch_env, capsys):
    unlabelled = ecr_image("byoc-check-unlabelled", "0.1.0")  # in ECR, but its configuration is nowhere
    assert cli.main(["--dry-run", *DEPLOY, "--image", unlabelled, "--instance-type", "ml.g5.xlarge"]) == 2
    assert "cannot read the configuration (labels)" in capsys.readouterr().err
    assert cli.main(["--dry-run", *DEPLOY, "--image", unlabelled, "--instance-type", "ml.g5.xlarge",
                     "--skip-check"]) == 0
    assert "check skipped (--skip-check)" in capsys.readouterr().out


@pytest.mark.docker
def test_the_check_reads_the_built_images_labels_from_the_local_engine(aws_env, capsys):
    docker.from_env().images.get(SERVING_IMAGE)  # make build's image: its labels come from its own torch
    code, out = check(capsys, "--image", SERVING_IMAGE, "--instance-type", "ml.p3.2xlarge")
    assert code == 0 and "InferenceAmiVersion: al2-ami-sagemaker-inference-gpu-2-1" in out, out
    labels = docker.from_env().images.get(SERVING_IMAGE).labels
    assert json.dumps(labels)  # labelled by make build
    assert "sm_70" in labels["byoc.cuda.archs"].split(",")


def test_tune_checks_the_image_too(launch_env, capsys):
    tune = ["tune", "--role", ROLE, "--channel", "train=s3://bucket/fm/train", "--channel", "valid=s3://bucket/fm/v",
            "--output", "s3://bucket/out",
            "--range", "lr=0.01:0.1", "--instance-type", "ml.p3.2xlarge"]
    lines, _ = dry_run(capsys, *tune, "--image", launch_env["training"])
    assert lines[0] == f"check {launch_env['training']} on ml.p3.2xlarge (training): OK"
    assert cli.main(["--dry-run", *tune, "--image", launch_env["cuda13"]]) == 2
    assert "compute capability 7.0" in capsys.readouterr().err


@pytest.mark.parametrize("instance_type, mode", [("ml.c7g.xlarge", "realtime"), ("ml.r7gd.2xlarge", "async"),
                                                 ("ml.p6e-gb200.36xlarge", "training")])
def test_an_amd64_image_is_refused_on_arm64_hosts(launch_env, capsys, instance_type, mode):
    """The platform comes from the image's config blob in ECR ("architecture"), as the labels do."""
    code, out = check(capsys, "--image", launch_env["serving"], "--instance-type", instance_type, "--mode", mode)
    assert code == 2 and "(arm64) processors, and the image is built for linux/amd64: it cannot start" in out, out


def test_gpu_families_the_kit_has_no_row_for_are_refused_not_run_on_the_cpu(launch_env, capsys):
    code, out = check(capsys, "--image", launch_env["serving"], "--instance-type", "ml.p6-b200.48xlarge")
    assert code == 2 and "ml.p6-b200.48xlarge is a GPU instance the kit has no row for" in out, out
    assert "no NVIDIA GPU" not in out
    # BYOC_DEVICE=cuda is no mistake there: the refusal is the missing row's, not "no GPU"
    assert cli.main(["--dry-run", *DEPLOY, "--image", launch_env["serving"], "--instance-type", "ml.g7e.2xlarge",
                     "--env", "BYOC_DEVICE=cuda"]) == 2
    err = capsys.readouterr().err
    assert "a GPU instance the kit has no row for" in err and "which has no GPU" not in err, err


def test_trainium_training_is_told_its_accelerators_go_unused(launch_env, capsys):
    code, out = check(capsys, "--image", launch_env["training"], "--instance-type", "ml.trn1.32xlarge",
                      "--mode", "training")
    assert code == 0 and "warning: ml.trn1.32xlarge has AWS Trainium accelerators, not NVIDIA GPUs" in out, out


def test_a_multi_platform_index_is_read_for_the_instances_platform(launch_env, capsys):
    """buildx --platform linux/amd64,linux/arm64 pushes an OCI image index, which has no config of its
    own (the check failed with KeyError 'config'): the check reads the instance platform's image."""
    serving = launch_env["serving"]
    repository, digest = serving.split("/", 1)[1].split("@")
    ecr = boto3.client("ecr")
    manifest = json.loads(ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])[
        "images"][0]["imageManifest"])
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": manifest["mediaType"], "digest": digest, "size": 1234,
         "platform": {"architecture": "amd64", "os": "linux"}}]})
    pushed = ecr.put_image(repositoryName=repository, imageManifest=index, imageTag="multi-1.0.0",
                           imageManifestMediaType="application/vnd.oci.image.index.v1+json")
    uri = serving.split("@")[0] + "@" + pushed["image"]["imageId"]["imageDigest"]
    code, out = check(capsys, "--image", uri, "--instance-type", "ml.g5.xlarge")
    assert code == 0 and "InferenceAmiVersion: al2-ami-sagemaker-inference-gpu-2-1" in out, out  # the amd64 labels
    code, out = check(capsys, "--image", uri, "--instance-type", "ml.c7g.xlarge")
    assert code == 2 and f"image {uri} is a multi-platform image index with no linux/arm64 image" in out, out
    assert "(it has amd64)" in out


def test_the_platform_comes_from_the_local_engine_too(local_images, capsys):
    code, out = check(capsys, "--image", local_images["amd64"], "--instance-type", "ml.m6g.xlarge")
    assert code == 2 and "ml.m6g.xlarge has AWS Graviton (arm64) processors, and the image is built for " \
        "linux/amd64" in out, out
    code, out = check(capsys, "--image", local_images["arm64"], "--instance-type", "ml.m6g.xlarge")
    assert code == 0 and ": OK" in out, out
    code, out = check(capsys, "--image", local_images["arm64"], "--instance-type", "ml.g5.xlarge")
    assert code == 2 and "ml.g5.xlarge has x86 (amd64) processors, and the image is built for linux/arm64" in out
