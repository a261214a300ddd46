"""byoc-cloud deploy in every hosting mode (real-time, async, serverless, multi-model), against
moto's server where it implements the calls, and each printed request held to botocore's model of
the API (cli_requests.dry_run) and, before it is printed, to its enums, maximums and patterns (byoc_cloud.model_check) where moto falls short:
moto refuses the DesiredProvisionedConcurrency dimension that serverless auto-scaling needs."""
import boto3
import pytest

from byoc_cloud import cli
from cli_requests import dry_run

ROLE = "arn:aws:iam::123456789012:role/byoc-sagemaker"


def deploy(images: dict, endpoint: str, *extra: str) -> list[str]:
    return ["deploy", "--image", images["serving"], "--role", ROLE, "--endpoint", endpoint,
            "--model-data", "s3://bucket/jobs/fashion-1/output/model.tar.gz", *extra]


def described(endpoint: str) -> tuple[dict, dict]:
    sagemaker = boto3.client("sagemaker")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"])
    return config, sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])


def scaling(endpoint: str) -> tuple[list, list]:
    client, resource = boto3.client("application-autoscaling"), f"endpoint/{endpoint}/variant/AllTraffic"
    return (client.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])["ScalableTargets"],
            client.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)["ScalingPolicies"])


def test_async_endpoint_scales_to_zero_and_back(launch_env, capsys):
    endpoint = "byoc-modes-async"
    assert cli.main(["--wait-delay", "0.1", *deploy(launch_env, endpoint, "--async-output", "s3://bucket/async/out",
                     "--async-failure", "s3://bucket/async/failed", "--max-concurrent-invocations", "4",
                     "--max-instances", "3", "--env", "BYOC_MAX_PAYLOAD_MB=64")]) == 0
    assert "async requests may be up to 1 GB; the container takes bodies up to 64 MiB" in capsys.readouterr().out
    config, model = described(endpoint)
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": "s3://bucket/async/out", "S3FailurePath": "s3://bucket/async/failed"},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}}
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 1  # a new endpoint starts with one
    assert model["PrimaryContainer"]["Environment"] == {"BYOC_MAX_PAYLOAD_MB": "64"}

    [target], policies = scaling(endpoint)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    by_type = {p["PolicyType"]: p for p in policies}
    tracking = by_type["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert tracking["CustomizedMetricSpecification"]["Dimensions"] == [{"Name": "EndpointName", "Value": endpoint}]
    assert tracking["TargetValue"] == 5
    step = by_type["StepScaling"]
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    [alarm] = boto3.client("cloudwatch").describe_alarms(
        AlarmNamePrefix=f"{endpoint}-has-backlog")["MetricAlarms"]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity" and alarm["Threshold"] == 1
    assert alarm["AlarmActions"] == [step["PolicyARN"]]  # the policy's ARN, filled in once it existed


def test_async_endpoint_kept_warm_has_no_scale_up_from_zero(launch_env, capsys):
    _, requests = dry_run(capsys, *deploy(launch_env, "byoc-modes-async-warm", "--async-output", "s3://bucket/out",
                                          "--min-instances", "1"))
    operations = [r["operation"] for r in requests]
    assert operations == ["put_image", "create_model", "create_endpoint_config", "create_endpoint",
                          "register_scalable_target", "put_scaling_policy"]  # put_image: the deployed-* tag


def test_serverless_endpoint_without_instances_or_isolation(launch_env, capsys):
    endpoint = "byoc-modes-serverless"
    assert cli.main(deploy(launch_env, endpoint, "--serverless-memory-mb", "3072", "--max-concurrency", "8")) == 0
    out = capsys.readouterr().out
    assert "check " + launch_env["serving"] + " on serverless (serverless): OK" in out
    assert "estimated cost: serverless, 3072 MB: 0.060 USD per 1,000 seconds of requests" in out
    config, _ = described(endpoint)
    [variant] = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 8}
    assert "InstanceType" not in variant
    assert scaling(endpoint) == ([], [])  # SageMaker scales on-demand serverless endpoints itself


def test_serverless_provisioned_concurrency_scales_on_its_utilization(launch_env, capsys):
    _, requests = dry_run(capsys, *deploy(launch_env, "byoc-modes-provisioned", "--serverless-memory-mb", "2048",
                                          "--max-concurrency", "10", "--provisioned-concurrency", "4"))
    protect, model, config, _, target, policy = (r["request"] for r in requests)
    assert protect["imageTag"].startswith("deployed-byoc-modes-provisioned-")
    assert model["EnableNetworkIsolation"] is False  # serverless endpoints do not support it
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048, "MaxConcurrency": 10, "ProvisionedConcurrency": 4}
    assert (target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == (
        "sagemaker:variant:DesiredProvisionedConcurrency", 1, 4)
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == \
        "SageMakerVariantProvisionedConcurrencyUtilization"
    assert tracking["TargetValue"] == 0.5


def test_multi_model_endpoint_over_a_prefix(launch_env, capsys):
    endpoint = "byoc-modes-mme"
    _, requests = dry_run(capsys, *deploy(launch_env, endpoint)[:-2], "--multi-model", "s3://bucket/models/",
                          "--instance-type", "ml.m5.large")
    model = next(r["request"] for r in requests if r["operation"] == "create_model")
    assert model["EnableNetworkIsolation"] is True  # moto drops it on describe: see the request
    assert cli.main(["--wait-delay", "0.1", *deploy(launch_env, endpoint)[:-2], "--multi-model",
                     "s3://bucket/models/", "--instance-type", "ml.m5.large"]) == 0
    _, model = described(endpoint)
    assert model["PrimaryContainer"]["Mode"] == "MultiModel"
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://bucket/models/"
    [target], [policy] = scaling(endpoint)
    assert policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
        "PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_settings_reach_the_model_and_isolation_is_the_default(launch_env, capsys):
    _, requests = dry_run(capsys, *deploy(launch_env, "byoc-modes-env", "--env", "BYOC_MAX_BATCH_SIZE=16",
                                          "--env", "BYOC_DEVICE=cpu", "--env", "SAGEMAKER_MODEL_SERVER_WORKERS=2"))
    model = next(r["request"] for r in requests if r["operation"] == "create_model")
    assert model["PrimaryContainer"]["Environment"] == {
        "BYOC_MAX_BATCH_SIZE": "16", "BYOC_DEVICE": "cpu", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    assert model["EnableNetworkIsolation"] is True
    _, requests = dry_run(capsys, *deploy(launch_env, "byoc-modes-open", "--no-network-isolation"))
    model = next(r["request"] for r in requests if r["operation"] == "create_model")
    assert model["EnableNetworkIsolation"] is False and "Environment" not in model["PrimaryContainer"]


SERVERLESS = ("--serverless-memory-mb", "2048")
ASYNC = ("--async-output", "s3://bucket/out")


@pytest.mark.parametrize("extra, says", [
    (("--serverless-memory-mb", "3000"), "SageMaker offers 1024, 2048, 3072, 4096, 5120, 6144 MB"),
    (("--serverless-memory-mb", "8192"), "SageMaker offers 1024"),
    ((*SERVERLESS, "--max-concurrency", "0"), "--max-concurrency 0: from 1 to 200"),
    ((*SERVERLESS, "--max-concurrency", "201"), "--max-concurrency 201: from 1 to 200"),
    ((*SERVERLESS, "--max-concurrency", "5", "--provisioned-concurrency", "6"), "from 1 to --max-concurrency (5)"),
    ((*SERVERLESS, "--provisioned-utilization", "1.5"), "a fraction in (0, 1]"),
    ((*SERVERLESS, "--instance-type", "ml.m5.large"), "serverless endpoints have no instances"),
    ((*SERVERLESS, "--max-instances", "3"), "serverless endpoints have no instances"),
    ((*SERVERLESS, "--network-isolation"), "serverless endpoints do not support network isolation"),
    ((*SERVERLESS, *ASYNC), "serverless or async, not both"),
    ((*SERVERLESS, "--env", "BYOC_MAX_PAYLOAD_MB=4"), "SageMaker sends serverless requests of at most 4,000,000"),
    (("--env", "BYOC_MAX_PAYLOAD_MB=7"), "SageMaker sends realtime requests of at most 6,291,456 bytes"),
    (("--max-concurrency", "4"), "--max-concurrency: for serverless endpoints only; this one is realtime"),
    (("--async-failure", "s3://bucket/failed"), "--async-failure: for async endpoints only; this one is realtime"),
    ((*ASYNC, "--invocations-per-instance", "50"), "--invocations-per-instance: for realtime endpoints only"),
    ((*ASYNC, "--max-concurrent-invocations", "1001"), "from 1 to 1000 per instance"),
    ((*ASYNC, "--max-concurrent-invocations", "0"), "--max-concurrent-invocations 0: from 1 to 1000"),
    (("--async-output", "https://example.com/out"), "expected s3://bucket/prefix"),
    (("--min-instances", "0"), "1 <= min <= max"),
    (("--min-instances", "3", "--max-instances", "2"), "1 <= min <= max"),
    ((*ASYNC, "--min-instances", "0", "--max-instances", "0"), "0 (scale to zero) <= min <= max, and max >= 1"),
    (("--env", "BYOC_MAX_BATCH_SZIE=4"), "reads no such setting. Did you mean BYOC_MAX_BATCH_SIZE?"),
    (("--env", "SAGEMAKER_MULTI_MODEL=true"), "set by SageMaker, for Mode MultiModel (byoc-cloud deploy --multi-mod"),
    (("--env", "SAGEMAKER_BIND_TO_PORT=9000"), "SAGEMAKER_BIND_TO_PORT: set by SageMaker"),
    (("--env", "BYOC_MAX_BATCH_SIZE=0"), "BYOC_MAX_BATCH_SIZE='0': must be at least 1"),
    (("--env", "SAGEMAKER_MODEL_SERVER_TIMEOUT=1m"), "must be a whole number"),
    (("--env", "BYOC_DEVICE=gpu"), "must be one of auto, cpu, cuda"),
    (("--env", "BYOC_DEVICE"), "expected NAME=VALUE"),
    (("--env", "BYOC_DEVICE=cpu", "--env", "BYOC_DEVICE=cuda"), "--env BYOC_DEVICE is given twice"),
    (("--env", "OMP_NUM_THREADS=2"), "the serving image reads no such setting"),  # a training setting
])
def test_what_the_target_cannot_take_is_refused_before_any_call(launch_env, capsys, extra, says):
    endpoint = "byoc-modes-refused"
    assert cli.main(deploy(launch_env, endpoint, *extra)) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert endpoint not in [e["EndpointName"] for e in boto3.client("sagemaker").list_endpoints()["Endpoints"]]


@pytest.mark.parametrize("extra, says", [
    (("--multi-model", "s3://bucket/models"), "end it with /"),
    (("--multi-model", "s3://bucket/models/", *ASYNC), "InvokeEndpointAsync cannot name a TargetModel"),
    (("--multi-model", "s3://bucket/models/", *SERVERLESS), "serverless endpoints do not host multi-model"),
    (("--multi-model", "s3://bucket/models/", "--instance-type", "ml.g4dn.xlarge"), "Triton Inference Server"),
    (("--multi-model", "s3://bucket/models/", "--instance-type", "ml.g7e.2xlarge"), "Triton Inference Server"),  # no row
])
def test_multi_model_refusals(launch_env, capsys, extra, says):
    argv = ["deploy", "--image", launch_env["serving"], "--role", ROLE, "--endpoint", "byoc-modes-mme-refused", *extra]
    assert cli.main(argv) == 2
    assert says in capsys.readouterr().err


def test_one_model_source_only(launch_env, capsys):
    assert cli.main(deploy(launch_env, "byoc-modes-two-sources", "--multi-model", "s3://bucket/models/")) == 2
    assert "--multi-model: not allowed with argument --model-data" in capsys.readouterr().err


def test_async_refusal_is_grounded_in_the_runtime_api():
    """InvokeEndpointAsync takes no TargetModel (why --multi-model refuses --async-output), InvokeEndpoint does."""
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1").meta.service_model
    assert "TargetModel" not in runtime.operation_model("InvokeEndpointAsync").input_shape.members
    assert "TargetModel" in runtime.operation_model("InvokeEndpoint").input_shape.members
