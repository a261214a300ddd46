"""byoc-cloud: training jobs and endpoints by image URI, against moto's server.

moto runs jobs and endpoints instantly (Completed, InService) and replaces a
job's metric definitions with its own on describe, so what we send is also
checked from --dry-run output, validated against botocore's model of the
SageMaker API. moto 5.2.5 does not implement UpdateEndpoint: `roll` is run
with --dry-run on an endpoint that `deploy` really created in moto, so its
describe calls are real and only the final three writes are printed.
"""
import os
import subprocess
import sys

import boto3
import pytest

from byoc_cloud import cli as launch
from byoc.training.metrics import METRIC_DEFINITIONS
from cli_requests import ROLE, dry_run


def train(images: dict) -> list[str]:
    return ["train", "--image", images["training"], *TRAIN]


TRAIN = ["--role", ROLE, "--channel", "train=s3://bucket/fm/train",
         "--channel", "valid=s3://bucket/fm/valid", "--output", "s3://bucket/out", "--hp", "epochs=10",
         "--hp", "model=resnet_small", "--instance-type", "ml.g4dn.xlarge", "--instance-count", "2"]


def test_train_dry_run_prints_the_request_and_the_cost(launch_env, capsys):
    lines, [request] = dry_run(capsys, *train(launch_env), "--spot", "--max-run-hours", "1", "--max-wait-hours", "3",
                               "--checkpoint-s3-uri", "s3://bucket/ckpt", "--job-name", "byoc-dry")
    assert lines[0] == f"check {launch_env['training']} on ml.g4dn.xlarge (training): OK"
    assert lines[-1] == ("estimated cost: 2 x ml.g4dn.xlarge at 0.736 USD/h on-demand (us-east-1); at most 1.47 USD "
                         "on-demand for the full 1 h limit, about 0.44 USD on spot (assuming 70% off)")
    job = request["request"]
    assert request["operation"] == "create_training_job"
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert job["HyperParameters"] == {"epochs": "10", "model": '"resnet_small"'}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 10800}
    assert job["CheckpointConfig"] == {"S3Uri": "s3://bucket/ckpt", "LocalPath": "/opt/ml/checkpoints"}
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "valid"]
    names = [s["TrainingJobName"] for s in boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]]
    assert "byoc-dry" not in names  # a dry run sends nothing


def test_train_starts_a_spot_job(launch_env, capsys):
    assert launch.main([*train(launch_env), "--spot", "--checkpoint-s3-uri", "s3://bucket/ckpt", "--job-name", "byoc-spot"]) == 0
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="byoc-spot")
    assert job["AlgorithmSpecification"]["TrainingImage"] == launch_env["training"]
    assert job["EnableManagedSpotTraining"] is True
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 2 * job["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert job["CheckpointConfig"]["S3Uri"] == "s3://bucket/ckpt"


@pytest.mark.parametrize("extra, message", [
    (["--spot", "--max-run-hours", "2", "--max-wait-hours", "1"], "must be at least --max-run-hours"),
    (["--max-wait-hours", "1"], "--spot training only"),
    (["--hp", "epochs"], "expected NAME=VALUE"),
    (["--channel", "test=/local/path"], "expected NAME=s3://"),
    (["--instance-type", "ml.x99.huge"], "argument --instance-type: 'ml.x99.huge' is not a SageMaker instance type; "
                                         "training and tuning jobs take ml.c4, "),
])
def test_train_refuses_bad_arguments_before_calling_aws(launch_env, capsys, extra, message):
    assert launch.main([*train(launch_env), *extra, "--job-name", "byoc-bad"]) == 2
    assert message in capsys.readouterr().err
    names = [s["TrainingJobName"] for s in boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]]
    assert "byoc-bad" not in names


def test_deploy_then_roll(launch_env, capsys):
    sagemaker, scaling, ecr = boto3.client("sagemaker"), boto3.client("application-autoscaling"), boto3.client("ecr")
    serving = launch_env["serving"]
    assert launch.main([*train(launch_env), "--job-name", "byoc-for-deploy"]) == 0
    deploy = ["--wait-delay", "0.1", "deploy", "--image", serving, "--role", ROLE,
              "--endpoint", "byoc-ep", "--training-job", "byoc-for-deploy", "--min-instances", "1",
              "--max-instances", "3", "--invocations-per-instance", "50"]
    assert launch.main(deploy) == 0
    out = capsys.readouterr().out
    assert "estimated cost: ml.m5.xlarge at 0.230 USD/h" in out
    assert "warning: ml.m5.xlarge has no NVIDIA GPU: the image runs its model on the CPU" in out

    endpoint = sagemaker.describe_endpoint(EndpointName="byoc-ep")
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    [variant] = config["ProductionVariants"]
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == serving
    digest = serving.split("@")[1]
    [details] = ecr.describe_images(repositoryName="byoc-launch-serving", imageIds=[{"imageDigest": digest}])["imageDetails"]
    # kept by the lifecycle policy (other tests of the session deploy the same stand-in image too)
    assert {"1.0.0", f"deployed-byoc-ep-{digest[7:19]}"} <= set(details["imageTags"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == \
        sagemaker.describe_training_job(TrainingJobName="byoc-for-deploy")["ModelArtifacts"]["S3ModelArtifacts"]
    resource = "endpoint/byoc-ep/variant/AllTraffic"  # moto is shared by the session's tests: this endpoint's only
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == \
        ("endpoint/byoc-ep/variant/AllTraffic", 1, 3)
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 50
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"

    new_image = launch_env["serving-next"]
    assert launch.main(["roll", "--endpoint", "byoc-ep", "--image", new_image, "--dry-run"]) == 0
    assert '"operation": "update_endpoint"' in capsys.readouterr().out  # printed, not sent (moto lacks it)
    lines, requests = dry_run(capsys, "roll", "--endpoint", "byoc-ep", "--image", new_image, "--no-rollback")
    assert [r["operation"] for r in requests] == ["put_image", "create_model", "create_endpoint_config",
                                                  "update_endpoint"]
    assert requests[0]["request"]["imageTag"] == f"deployed-byoc-ep-{new_image.split('@')[1][7:19]}"
    new_model, new_config, update = (r["request"] for r in requests[1:])
    assert new_model["PrimaryContainer"] == {"Image": new_image, "ModelDataUrl": model["PrimaryContainer"]["ModelDataUrl"]}
    assert new_model["ExecutionRoleArn"] == ROLE
    [new_variant] = new_config["ProductionVariants"]
    assert (new_variant["VariantName"], new_variant["InstanceType"]) == ("AllTraffic", variant["InstanceType"])
    assert update == {"EndpointName": "byoc-ep", "EndpointConfigName": new_config["EndpointConfigName"],
                      "RetainAllVariantProperties": True}


def test_roll_of_a_missing_endpoint_is_a_clear_error(launch_env, capsys):
    assert launch.main(["--dry-run", "roll", "--endpoint", "no-such-endpoint", "--image", launch_env["serving"]]) == 1
    assert "no-such-endpoint" in capsys.readouterr().err


def test_the_cli_runs_without_torch(launch_env, tmp_path):
    """The launch CLI is for hosts without torch: run it with torch made unimportable."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
                       "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
                       "            raise ImportError('torch is blocked in this test')\n"
                       "sys.meta_path.insert(0, Block())\n")
    tune = ["tune", "--image", launch_env["training"], *TRAIN, "--range", "lr=0.01:0.1"]
    for argv, operation in ((train(launch_env), "create_training_job"), (tune, "create_hyper_parameter_tuning_job")):
        result = subprocess.run([sys.executable, "-c", "import byoc_cloud.cli as l; raise SystemExit(l.main())",
                                 "--dry-run", *argv], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(tmp_path)})
        assert result.returncode == 0, result.stderr
        assert f'"operation": "{operation}"' in result.stdout
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert "torch is blocked" in check.stderr  # the blocker works, so the run above really had no torch
