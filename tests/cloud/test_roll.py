"""byoc-cloud roll: a copy of the live model and endpoint config that differs in the image only,
blue/green traffic shifting and rollback alarms.

The live endpoints are made here with boto3 as a user would have made them outside the kit, with
every setting a roll used to drop. moto does not implement UpdateEndpoint, so the roll runs with
--dry-run against endpoints that really exist in moto (its describe calls are real); its create
calls and alarms are then sent to moto as printed (apply), and every request, update_endpoint
included, is held to botocore's model of the API and, before it is printed, to its enums, maximums and patterns (byoc_cloud.model_check)."""
import boto3
import pytest

from byoc_cloud import cli
from cli_requests import dry_run, ecr_image

ROLE = "arn:aws:iam::123456789012:role/byoc-sagemaker"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VPC = {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]}


def live_endpoint(name: str, image: str, variant: dict, **config) -> dict:
    """A model, endpoint config and endpoint in moto, made directly; returns the model's request."""
    sagemaker = boto3.client("sagemaker")
    model = {"ModelName": f"{name}-model", "ExecutionRoleArn": ROLE, "VpcConfig": VPC,
             "Tags": [{"Key": "team", "Value": "vision"}],
             "PrimaryContainer": {"Image": image, "ModelDataUrl": "s3://bucket/live/model.tar.gz",
                                  "Mode": "SingleModel",
                                  "Environment": {"BYOC_MAX_BATCH_SIZE": "16", "BYOC_DEVICE": "cpu"}}}
    sagemaker.create_model(**model)
    sagemaker.create_endpoint_config(EndpointConfigName=f"{name}-config", Tags=[{"Key": "team", "Value": "vision"}],
                                     ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": model["ModelName"],
                                                          **variant}], **config)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    return model


def rolled(capsys, *argv) -> tuple[list[str], dict]:
    lines, requests = dry_run(capsys, "roll", *argv)
    return lines, {r["operation"] if r["operation"] != "put_metric_alarm" else r["request"]["AlarmName"]: r
                   for r in requests}


def apply(requests: dict) -> None:
    """Send what the dry run printed, except update_endpoint (moto has none)."""
    for r in requests.values():
        if r["operation"] != "update_endpoint":
            getattr(boto3.client(r["client"]), r["operation"])(**r["request"])


DATA_CAPTURE = {"EnableCapture": True, "InitialSamplingPercentage": 20, "DestinationS3Uri": "s3://bucket/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]}


def test_a_roll_keeps_every_setting_and_changes_the_image(launch_env, capsys):
    endpoint, image = "byoc-roll-whole", launch_env["serving-next"]
    model = live_endpoint(endpoint, launch_env["serving"], {
        "InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 2, "InitialVariantWeight": 1.0,
        "ContainerStartupHealthCheckTimeoutInSeconds": 600, "InferenceAmiVersion": "al2-ami-sagemaker-inference-gpu-2"},
        DataCaptureConfig=DATA_CAPTURE, KmsKeyId=KMS)
    lines, requests = rolled(capsys, "--endpoint", endpoint, "--image", image)
    new_model, new_config = requests["create_model"]["request"], requests["create_endpoint_config"]["request"]
    assert new_model["PrimaryContainer"] == model["PrimaryContainer"] | {"Image": image}
    assert (new_model["VpcConfig"], new_model["ExecutionRoleArn"]) == (VPC, ROLE)
    assert {"Key": "team", "Value": "vision"} in new_model["Tags"] and {"Key": "team", "Value": "vision"} in \
        new_config["Tags"]
    assert (new_config["DataCaptureConfig"], new_config["KmsKeyId"]) == (DATA_CAPTURE, KMS)
    [variant] = new_config["ProductionVariants"]
    assert variant == {"VariantName": "AllTraffic", "ModelName": new_model["ModelName"],
                       "InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 2, "InitialVariantWeight": 1.0,
                       "ContainerStartupHealthCheckTimeoutInSeconds": 600,
                       "InferenceAmiVersion": "al2-ami-sagemaker-inference-gpu-2-1"}  # what the new image needs
    assert "AllTraffic: estimated cost: ml.g4dn.xlarge at 0.736 USD/h" in "\n".join(lines)
    update = requests["update_endpoint"]["request"]
    assert (update["EndpointConfigName"], update["RetainAllVariantProperties"]) == (new_config["EndpointConfigName"],
                                                                                   True)


def test_async_and_serverless_endpoints_roll_as_themselves(launch_env, capsys):
    image = launch_env["serving-next"]
    asynchronous = {"OutputConfig": {"S3OutputPath": "s3://bucket/async/out", "S3FailurePath": "s3://bucket/async/err",
                                     "KmsKeyId": KMS, "NotificationConfig": {
                                         "SuccessTopic": "arn:aws:sns:us-east-1:123456789012:scored",
                                         "ErrorTopic": "arn:aws:sns:us-east-1:123456789012:failed"}},
                    "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}}
    live_endpoint("byoc-roll-async", launch_env["serving"], {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1},
                  AsyncInferenceConfig=asynchronous)
    lines, requests = rolled(capsys, "--endpoint", "byoc-roll-async", "--image", image)
    assert requests["create_endpoint_config"]["request"]["AsyncInferenceConfig"] == asynchronous
    assert f"check {image} on ml.m5.xlarge (async): OK" in lines

    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 10, "ProvisionedConcurrency": 2}
    live_endpoint("byoc-roll-serverless", launch_env["serving"], {"ServerlessConfig": serverless})
    lines, requests = rolled(capsys, "--endpoint", "byoc-roll-serverless", "--image", image)  # was a KeyError
    config = requests["create_endpoint_config"]["request"]
    [variant] = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == serverless and "InstanceType" not in variant
    assert "DataCaptureConfig" not in config  # moto describes it as {}: an empty one would be refused
    assert f"check {image} on serverless (serverless): OK" in lines
    assert any(line.startswith("AllTraffic: estimated cost: serverless, 2048 MB") for line in lines)


def test_canary_with_alarms_that_roll_back(launch_env, capsys):
    endpoint = "byoc-roll-canary"
    live_endpoint(endpoint, launch_env["serving"], {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 4})
    _, requests = rolled(capsys, "--endpoint", endpoint, "--image", launch_env["serving-next"], "--canary", "10",
                         "--bake-minutes", "15", "--max-error-percent", "2.5", "--max-latency-ms", "250")
    new_config = requests["create_endpoint_config"]["request"]["EndpointConfigName"]
    alarms = [f"{endpoint}-AllTraffic-5xx-rate", f"{endpoint}-AllTraffic-model-latency"]
    assert requests["update_endpoint"]["request"]["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                                            "WaitIntervalInSeconds": 900},
            "TerminationWaitInSeconds": 900, "MaximumExecutionTimeoutInSeconds": 1800 + 900 + 900},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]}}

    apply(requests)
    found = {a["AlarmName"]: a for a in boto3.client("cloudwatch").describe_alarms(AlarmNames=alarms)["MetricAlarms"]}
    errors, latency = found[alarms[0]], found[alarms[1]]
    assert (errors["MetricName"], errors["Statistic"], errors["Threshold"]) == ("Invocation5XXErrors", "Average", 0.025)
    assert errors["Dimensions"] == [{"Name": "EndpointName", "Value": endpoint},
                                    {"Name": "VariantName", "Value": "AllTraffic"}]  # both fleets
    assert (latency["MetricName"], latency["Threshold"]) == ("ModelLatency", 250_000)  # microseconds
    assert {"Name": "EndpointConfigName", "Value": new_config} in latency["Dimensions"]  # the new fleet only
    assert (errors["Period"], errors["EvaluationPeriods"], errors["DatapointsToAlarm"]) == (60, 3, 2)
    assert errors["TreatMissingData"] == "notBreaching"


def test_linear_all_at_once_and_no_rollback(launch_env, capsys):
    endpoint = "byoc-roll-linear"
    live_endpoint(endpoint, launch_env["serving"], {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 5})
    argv = ("--endpoint", endpoint, "--image", launch_env["serving-next"])
    _, requests = rolled(capsys, *argv, "--linear", "20", "--bake-minutes", "20")
    policy = requests["update_endpoint"]["request"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20}, "WaitIntervalInSeconds": 1200}
    assert policy["MaximumExecutionTimeoutInSeconds"] == 1800 + 5 * 1200 + 1200

    _, requests = rolled(capsys, *argv)  # the default: all at once, baked 10 minutes before the old fleet goes
    policy = requests["update_endpoint"]["request"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy == {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                      "TerminationWaitInSeconds": 600, "MaximumExecutionTimeoutInSeconds": 2400}

    _, requests = rolled(capsys, *argv, "--no-rollback")
    assert list(requests) == ["put_image", "create_model", "create_endpoint_config", "update_endpoint"]
    assert "DeploymentConfig" not in requests["update_endpoint"]["request"]


@pytest.mark.parametrize("extra, says", [
    (("--canary", "60"), "--canary 60: 1 to 50 percent"),
    (("--canary", "0"), "--canary 0: 1 to 50 percent"),
    (("--linear", "5"), "--linear 5: steps of 10 to 50 percent"),
    (("--bake-minutes", "2"), "--bake-minutes 2: 3 (what the alarms need to judge) to 60"),
    (("--bake-minutes", "61"), "--bake-minutes 61"),
    (("--linear", "10", "--bake-minutes", "60"), "longer than SageMaker's 8 h limit for one deployment"),
    (("--no-rollback", "--canary", "10"), "--canary with --no-rollback"),
    (("--max-error-percent", "100"), "--max-error-percent is a percentage in [0, 100)"),
    (("--max-latency-ms", "0"), "--max-latency-ms a positive number"),
])
def test_bad_rolls_are_refused_before_any_call(launch_env, capsys, extra, says):
    endpoint = "byoc-roll-refused"
    live_endpoint(endpoint, launch_env["serving"], {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1})
    assert cli.main(["roll", "--endpoint", endpoint, "--image", launch_env["serving-next"], *extra]) == 2
    assert says in capsys.readouterr().err
    models = [m["ModelName"] for m in boto3.client("sagemaker").list_models(MaxResults=100)["Models"]]
    assert [m for m in models if m.startswith(endpoint)] == [f"{endpoint}-model"]  # moto ignores NameContains


def test_a_pipeline_model_is_refused(launch_env, capsys):
    sagemaker, endpoint = boto3.client("sagemaker"), "byoc-roll-pipeline"
    containers = [{"Image": launch_env["serving"], "ModelDataUrl": "s3://bucket/a.tar.gz"},
                  {"Image": launch_env["serving"], "ModelDataUrl": "s3://bucket/b.tar.gz"}]
    sagemaker.create_model(ModelName=f"{endpoint}-model", ExecutionRoleArn=ROLE, Containers=containers)
    sagemaker.create_endpoint_config(EndpointConfigName=f"{endpoint}-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": f"{endpoint}-model", "InstanceType": "ml.m5.xlarge",
         "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-config")
    assert cli.main(["--dry-run", "roll", "--endpoint", endpoint, "--image", launch_env["serving-next"]]) == 2
    assert "has 2 containers" in capsys.readouterr().err


def test_network_isolation_survives_a_roll(live_aws, capsys):
    """moto's create_model drops EnableNetworkIsolation (describe_model always says false): the
    in-process moto's model object is set as AWS would describe it."""
    backend = live_aws
    image = ecr_image("byoc-roll-isolated", "0.1.0")
    live_endpoint("byoc-roll-isolated", image, {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1})
    backend._models["byoc-roll-isolated-model"].enable_network_isolation = True  # as AWS would describe it
    assert boto3.client("sagemaker").describe_model(ModelName="byoc-roll-isolated-model")["EnableNetworkIsolation"]
    _, requests = rolled(capsys, "--endpoint", "byoc-roll-isolated", "--image", image, "--skip-check")
    assert requests["create_model"]["request"]["EnableNetworkIsolation"] is True


def pooled_sagemaker(pools: list[dict]):
    """A SageMaker client whose live endpoint has one heterogeneous variant (InstancePools, which moto
    refuses): botocore's Stubber answers its describe calls with responses the API model validates."""
    from datetime import datetime, timezone

    from botocore.stub import Stubber

    sagemaker, now = boto3.client("sagemaker"), datetime.now(timezone.utc)
    arn = "arn:aws:sagemaker:us-east-1:123456789012:{}/byoc-roll-pools"
    stub = Stubber(sagemaker)
    stub.add_response("describe_endpoint", {
        "EndpointName": "byoc-roll-pools", "EndpointArn": arn.format("endpoint"), "EndpointConfigName": "pools-config",
        "EndpointStatus": "InService", "CreationTime": now, "LastModifiedTime": now})
    stub.add_response("describe_endpoint_config", {
        "EndpointConfigName": "pools-config", "EndpointConfigArn": arn.format("endpoint-config"), "CreationTime": now,
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "pools-model", "InitialInstanceCount": 1,
                                "InstancePools": pools}]})
    stub.add_response("describe_model", {
        "ModelName": "pools-model", "ModelArn": arn.format("model"), "CreationTime": now, "ExecutionRoleArn": ROLE,
        "PrimaryContainer": {"Image": "old", "ModelDataUrl": "s3://bucket/live/model.tar.gz"}})
    stub.add_response("list_tags", {"Tags": []})
    stub.add_response("list_tags", {"Tags": []})
    stub.activate()
    return sagemaker


@pytest.mark.parametrize("pools, ami", [
    ([{"InstanceType": "ml.g5.xlarge", "Priority": 1}, {"InstanceType": "ml.g4dn.xlarge", "Priority": 2}],
     "al2-ami-sagemaker-inference-gpu-2-1"),
    ([{"InstanceType": "ml.m5.xlarge", "Priority": 1}, {"InstanceType": "ml.c5.xlarge", "Priority": 2}], None)])
def test_a_heterogeneous_variant_is_checked_on_every_instance_pool(launch_env, pools, ami):
    """A variant with InstancePools has no InstanceType: the roll's check failed on None with a traceback."""
    from byoc_cloud import preflight, rolls

    args = cli.parser().parse_args(["roll", "--endpoint", "byoc-roll-pools", "--image", launch_env["serving-next"]])
    rolls.check_rollback_flags(args)
    clients = {"sagemaker": pooled_sagemaker(pools), "ecr": boto3.client("ecr")}
    calls = rolls.roll_calls(clients["sagemaker"], args,
                             check=lambda mode, instance_type: preflight.preflight(args, clients, mode, instance_type).ami)
    [variant] = next(request for _, operation, request in calls if operation == "create_endpoint_config")[
        "ProductionVariants"]
    assert variant["InstancePools"] == pools and variant.get("InferenceAmiVersion") == ami


def test_instance_pools_that_need_different_amis_are_refused(launch_env):
    from byoc_cloud import preflight, rolls
    from byoc_cloud.calls import LaunchError

    args = cli.parser().parse_args(["roll", "--endpoint", "byoc-roll-pools", "--image", launch_env["serving-next"]])
    rolls.check_rollback_flags(args)
    clients = {"sagemaker": pooled_sagemaker([{"InstanceType": "ml.g5.xlarge", "Priority": 1},
                                              {"InstanceType": "ml.m5.xlarge", "Priority": 2}]),
               "ecr": boto3.client("ecr")}
    with pytest.raises(LaunchError, match="variant AllTraffic's instance pools need different AMIs "
                                          r"\(ml.g5.xlarge: al2-ami-sagemaker-inference-gpu-2-1; ml.m5.xlarge: the "
                                          "default AMI\\), and a variant has one InferenceAmiVersion"):
        rolls.roll_calls(clients["sagemaker"], args,
                         check=lambda mode, instance_type: preflight.preflight(args, clients, mode, instance_type).ami)
