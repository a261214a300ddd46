"""byoc-cloud {train,deploy,roll}: SageMaker training jobs and endpoints from image URIs, with boto3.

Every command prints a cost estimate (prices.json) before it calls AWS, and
--dry-run prints the requests instead of sending them. boto3 finds region,
credentials and endpoints as usual (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL).
"""
import argparse
import json
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from byoc.cloud.pricing import PriceTable, UnknownPrice
from byoc.training.metrics import METRIC_DEFINITIONS  # plain data: no torch needed

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


class LaunchError(ValueError):
    pass


def timestamped(base: str) -> str:
    """A SageMaker name (at most 63 characters) unique to the second."""
    return f"{base[:47]}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def hyperparameters(pairs: list[str]) -> dict[str, str]:
    """--hp epochs=10 --hp model=resnet_small -> JSON-encoded strings, as the training image reads them."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise LaunchError(f"hyperparameter {pair!r}: expected NAME=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key] = json.dumps(value)
    return out


def channels(pairs: list[str]) -> list[dict]:
    out = []
    for pair in pairs:
        name, sep, uri = pair.partition("=")
        if not sep or not uri.startswith("s3://"):
            raise LaunchError(f"channel {pair!r}: expected NAME=s3://bucket/prefix")
        out.append({"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}})
    return out


def training_request(args) -> dict:
    max_run = int(args.max_run_hours * 3600)
    request = {
        "TrainingJobName": args.job_name or timestamped("byoc-training"),
        "AlgorithmSpecification": {"TrainingImage": args.image, "TrainingInputMode": "File",
                                   "MetricDefinitions": METRIC_DEFINITIONS,
                                   "EnableSageMakerMetricsTimeSeries": True},
        "RoleArn": args.role,
        "HyperParameters": hyperparameters(args.hp),
        "InputDataConfig": channels(args.channel),
        "OutputDataConfig": {"S3OutputPath": args.output},
        "ResourceConfig": {"InstanceType": args.instance_type, "InstanceCount": args.instance_count,
                           "VolumeSizeInGB": args.volume_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_run},
        "EnableManagedSpotTraining": args.spot,
        "Tags": [{"Key": "project", "Value": "byoc"}],
    }
    if args.spot:
        max_wait = int(args.max_wait_hours * 3600) if args.max_wait_hours else 2 * max_run
        if max_wait < max_run:
            raise LaunchError(f"--max-wait-hours ({args.max_wait_hours}) must be at least --max-run-hours "
                              f"({args.max_run_hours}): it counts the training time plus the waits for capacity")
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_wait
        if not args.checkpoint_s3_uri:
            print("warning: spot training without --checkpoint-s3-uri starts over after every interruption",
                  file=sys.stderr)
    elif args.max_wait_hours:
        raise LaunchError("--max-wait-hours applies to --spot training only")
    if args.checkpoint_s3_uri:
        request["CheckpointConfig"] = {"S3Uri": args.checkpoint_s3_uri, "LocalPath": "/opt/ml/checkpoints"}
    return request


def model_data(sagemaker, args) -> str:
    if args.model_data:
        return args.model_data
    job = sagemaker.describe_training_job(TrainingJobName=args.training_job)
    if job["TrainingJobStatus"] != "Completed":
        raise LaunchError(f"training job {args.training_job} is {job['TrainingJobStatus']}, not Completed")
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def model_request(name: str, image: str, data: str, role: str) -> dict:
    return {"ModelName": name, "ExecutionRoleArn": role, "Tags": [{"Key": "project", "Value": "byoc"}],
            "PrimaryContainer": {"Image": image, "ModelDataUrl": data}}


def endpoint_requests(args, data: str) -> list[tuple[str, str, dict]]:
    """(client, operation, request) in order: model, endpoint config, endpoint, scaling target, policy."""
    model = timestamped(args.endpoint)
    resource = f"endpoint/{args.endpoint}/variant/{VARIANT}"
    return [
        ("sagemaker", "create_model", model_request(model, args.image, data, args.role)),
        ("sagemaker", "create_endpoint_config", {"EndpointConfigName": model, "ProductionVariants": [{
            "VariantName": VARIANT, "ModelName": model, "InstanceType": args.instance_type,
            "InitialInstanceCount": args.min_instances}]}),
        ("sagemaker", "create_endpoint", {"EndpointName": args.endpoint, "EndpointConfigName": model,
                                          "Tags": [{"Key": "project", "Value": "byoc"}]}),
        ("application-autoscaling", "register_scalable_target", {
            "ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION,
            "MinCapacity": args.min_instances, "MaxCapacity": args.max_instances}),
        ("application-autoscaling", "put_scaling_policy", {
            "PolicyName": f"{args.endpoint}-invocations-per-instance", "ServiceNamespace": "sagemaker",
            "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION, "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": args.invocations_per_instance,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleOutCooldown": 60, "ScaleInCooldown": 300}}),
    ]


def roll_requests(sagemaker, args) -> list[tuple[str, str, dict]]:
    """A new model and endpoint config that differ from the live ones in the image only (and the model
    data, if given), then update_endpoint. Variant names and instance types stay, so the endpoint's
    auto-scaling keeps working; RetainAllVariantProperties keeps the instance counts it set."""
    endpoint = sagemaker.describe_endpoint(EndpointName=args.endpoint)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    name = timestamped(args.endpoint)
    requests, variants = [], []
    for variant in config["ProductionVariants"]:
        old = sagemaker.describe_model(ModelName=variant["ModelName"])
        data = model_data(sagemaker, args) if (args.model_data or args.training_job) \
            else old["PrimaryContainer"]["ModelDataUrl"]
        model = name if len(config["ProductionVariants"]) == 1 else f"{name[:50]}-{variant['VariantName'][:12]}"
        requests.append(("sagemaker", "create_model",
                         model_request(model, args.image, data, args.role or old["ExecutionRoleArn"])))
        variants.append({key: variant[key] for key in ("VariantName", "InstanceType", "InitialInstanceCount",
                                                       "InitialVariantWeight") if key in variant}
                        | {"ModelName": model})
    requests.append(("sagemaker", "create_endpoint_config", {"EndpointConfigName": name,
                                                             "ProductionVariants": variants}))
    requests.append(("sagemaker", "update_endpoint", {"EndpointName": args.endpoint, "EndpointConfigName": name,
                                                      "RetainAllVariantProperties": True}))
    return requests


def send(requests: list[tuple[str, str, dict]], dry_run: bool, clients: dict, wait_delay: float) -> None:
    for client, operation, request in requests:
        if dry_run:
            print(json.dumps({"client": client, "operation": operation, "request": request}, indent=2))
            continue
        if client == "application-autoscaling" and operation == "register_scalable_target":
            # Auto-scaling accepts an endpoint only once it is InService.
            name = request["ResourceId"].split("/")[1]
            print(f"waiting for endpoint {name} to be InService")
            clients["sagemaker"].get_waiter("endpoint_in_service").wait(
                EndpointName=name, WaiterConfig={"Delay": wait_delay, "MaxAttempts": int(3600 / wait_delay)})
        response = getattr(clients[client], operation)(**request)
        arn = next((v for k, v in response.items() if k.endswith("Arn")), "")
        print(f"{operation}: {arn or 'ok'}")


def _train(args, clients, prices) -> list:
    request = training_request(args)
    print(prices.training_estimate(args.instance_type, args.instance_count,
                                   request["StoppingCondition"]["MaxRuntimeInSeconds"], args.spot))
    return [("sagemaker", "create_training_job", request)]


def _deploy(args, clients, prices) -> list:
    if args.min_instances > args.max_instances:
        raise LaunchError("--min-instances must not exceed --max-instances")
    print(prices.hosting_estimate(args.instance_type, args.min_instances, args.max_instances))
    return endpoint_requests(args, model_data(clients["sagemaker"], args))


def _roll(args, clients, prices) -> list:
    requests = roll_requests(clients["sagemaker"], args)
    for _, _, request in requests:
        for variant in request.get("ProductionVariants", []):
            print(f"{variant['VariantName']}: " + prices.hosting_estimate(
                variant["InstanceType"], variant["InitialInstanceCount"], variant["InitialInstanceCount"]))
    return requests


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="byoc-cloud", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="print the requests instead of sending them")
    p.add_argument("--wait-delay", type=float, default=30, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    # --dry-run also after the command name; SUPPRESS keeps the top-level value when it is absent there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS, help="print, do not send")

    train = sub.add_parser("train", parents=[common], help="start a training job")
    train.add_argument("--image", required=True, help="training image URI (python -m ecr uri byoc-training)")
    train.add_argument("--role", required=True, help="the SageMaker execution role's ARN")
    train.add_argument("--channel", action="append", required=True, metavar="NAME=S3_URI",
                       help="an input channel, e.g. train=s3://bucket/fashion-mnist/train (repeatable)")
    train.add_argument("--output", required=True, metavar="S3_URI", help="where model.tar.gz goes")
    train.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE", help="a hyperparameter")
    train.add_argument("--instance-type", default="ml.g5.xlarge")
    train.add_argument("--instance-count", type=int, default=1)
    train.add_argument("--volume-gb", type=int, default=50)
    train.add_argument("--max-run-hours", type=float, default=2)
    train.add_argument("--spot", action="store_true", help="managed spot training")
    train.add_argument("--max-wait-hours", type=float, help="spot: training plus waiting (default: 2 x max run)")
    train.add_argument("--checkpoint-s3-uri", help="synced with /opt/ml/checkpoints: resume after interruptions")
    train.add_argument("--job-name")
    train.set_defaults(run=_train)

    def model_source(cmd, required):
        group = cmd.add_mutually_exclusive_group(required=required)
        group.add_argument("--model-data", metavar="S3_URI", help="a model.tar.gz")
        group.add_argument("--training-job", help="use this completed job's model")

    deploy = sub.add_parser("deploy", parents=[common], help="model, endpoint config, endpoint and auto-scaling")
    deploy.add_argument("--image", required=True, help="serving image URI (python -m ecr uri byoc-serving)")
    deploy.add_argument("--role", required=True)
    deploy.add_argument("--endpoint", required=True, help="the endpoint's name")
    model_source(deploy, required=True)
    deploy.add_argument("--instance-type", default="ml.m5.xlarge")
    deploy.add_argument("--min-instances", type=int, default=1)
    deploy.add_argument("--max-instances", type=int, default=2)
    deploy.add_argument("--invocations-per-instance", type=float, default=100,
                        help="auto-scaling target: invocations per instance per minute")
    deploy.set_defaults(run=_deploy)

    roll = sub.add_parser("roll", parents=[common], help="move a live endpoint to a new image")
    roll.add_argument("--endpoint", required=True)
    roll.add_argument("--image", required=True)
    roll.add_argument("--role", help="default: the current model's role")
    model_source(roll, required=False)
    roll.set_defaults(run=_roll)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    clients = {name: boto3.client(name) for name in ("sagemaker", "application-autoscaling")}
    try:
        requests = args.run(args, clients, PriceTable.load())
        send(requests, args.dry_run, clients, args.wait_delay)
    except (LaunchError, UnknownPrice) as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
