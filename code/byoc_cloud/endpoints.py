"""Endpoint requests for the serving image: deploy (model, config, endpoint, auto-scaling) and roll."""
from byoc_cloud.calls import Call, LaunchError, timestamped
from byoc_cloud.preflight import add_skip_check, preflight

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TAGS = [{"Key": "project", "Value": "byoc"}]


def model_data(sagemaker, args) -> str:
    if args.model_data:
        return args.model_data
    job = sagemaker.describe_training_job(TrainingJobName=args.training_job)
    if job["TrainingJobStatus"] != "Completed":
        raise LaunchError(f"training job {args.training_job} is {job['TrainingJobStatus']}, not Completed")
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def model_request(name: str, image: str, data: str, role: str) -> dict:
    return {"ModelName": name, "ExecutionRoleArn": role, "Tags": TAGS,
            "PrimaryContainer": {"Image": image, "ModelDataUrl": data}}


def scaling_calls(args, endpoint: str) -> list[Call]:
    resource = f"endpoint/{endpoint}/variant/{VARIANT}"
    return [
        ("application-autoscaling", "register_scalable_target", {
            "ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION,
            "MinCapacity": args.min_instances, "MaxCapacity": args.max_instances}),
        ("application-autoscaling", "put_scaling_policy", {
            "PolicyName": f"{endpoint}-invocations-per-instance", "ServiceNamespace": "sagemaker",
            "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION, "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": args.invocations_per_instance,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleOutCooldown": 60, "ScaleInCooldown": 300}}),
    ]


def endpoint_calls(args, data: str, ami: dict[str, str]) -> list[Call]:
    """In order: model, endpoint config, endpoint, scaling target, policy. `ami`: the check's
    InferenceAmiVersion for GPU instance types whose default driver is too old."""
    model = timestamped(args.endpoint)
    return [
        ("sagemaker", "create_model", model_request(model, args.image, data, args.role)),
        ("sagemaker", "create_endpoint_config", {"EndpointConfigName": model, "ProductionVariants": [{
            "VariantName": VARIANT, "ModelName": model, "InstanceType": args.instance_type,
            "InitialInstanceCount": args.min_instances, **ami}]}),
        ("sagemaker", "create_endpoint", {"EndpointName": args.endpoint, "EndpointConfigName": model,
                                          "Tags": TAGS}),
        *scaling_calls(args, args.endpoint),
    ]


def roll_calls(sagemaker, args, check=lambda instance_type: {}) -> list[Call]:
    """A new model and endpoint config that differ from the live ones in the image only (and the model
    data, if given), then update_endpoint. Variant names and instance types stay, so the endpoint's
    auto-scaling keeps working; RetainAllVariantProperties keeps the instance counts it set.
    check(instance_type) gives each variant the AMI override the new image needs."""
    endpoint = sagemaker.describe_endpoint(EndpointName=args.endpoint)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    name = timestamped(args.endpoint)
    calls, variants = [], []
    for variant in config["ProductionVariants"]:
        old = sagemaker.describe_model(ModelName=variant["ModelName"])
        data = model_data(sagemaker, args) if (args.model_data or args.training_job) \
            else old["PrimaryContainer"]["ModelDataUrl"]
        model = name if len(config["ProductionVariants"]) == 1 else f"{name[:50]}-{variant['VariantName'][:12]}"
        calls.append(("sagemaker", "create_model",
                      model_request(model, args.image, data, args.role or old["ExecutionRoleArn"])))
        variants.append({key: variant[key] for key in ("VariantName", "InstanceType", "InitialInstanceCount",
                                                       "InitialVariantWeight", "InferenceAmiVersion") if key in variant}
                        | {"ModelName": model} | check(variant["InstanceType"]))
    calls.append(("sagemaker", "create_endpoint_config", {"EndpointConfigName": name,
                                                          "ProductionVariants": variants}))
    calls.append(("sagemaker", "update_endpoint", {"EndpointName": args.endpoint, "EndpointConfigName": name,
                                                   "RetainAllVariantProperties": True}))
    return calls


def deploy(args, clients, prices) -> list[Call]:
    if args.min_instances > args.max_instances:
        raise LaunchError("--min-instances must not exceed --max-instances")
    verdict = preflight(args, clients, "realtime", args.instance_type)
    print(prices.hosting_estimate(args.instance_type, args.min_instances, args.max_instances))
    return endpoint_calls(args, model_data(clients["sagemaker"], args), verdict.ami)


def roll(args, clients, prices) -> list[Call]:
    calls = roll_calls(clients["sagemaker"], args,
                       check=lambda instance_type: preflight(args, clients, "realtime", instance_type).ami)
    for _, _, request in calls:
        for variant in request.get("ProductionVariants", []):
            print(f"{variant['VariantName']}: " + prices.hosting_estimate(
                variant["InstanceType"], variant["InitialInstanceCount"], variant["InitialInstanceCount"]))
    return calls


def _model_source(command, required: bool) -> None:
    group = command.add_mutually_exclusive_group(required=required)
    group.add_argument("--model-data", metavar="S3_URI", help="a model.tar.gz")
    group.add_argument("--training-job", help="use this completed job's model")


def add_commands(sub, common) -> None:
    command = sub.add_parser("deploy", parents=[common], help="model, endpoint config, endpoint and auto-scaling")
    command.add_argument("--image", required=True, help="serving image URI (python -m ecr uri byoc-serving)")
    command.add_argument("--role", required=True)
    command.add_argument("--endpoint", required=True, help="the endpoint's name")
    _model_source(command, required=True)
    command.add_argument("--instance-type", default="ml.m5.xlarge")
    command.add_argument("--min-instances", type=int, default=1)
    command.add_argument("--max-instances", type=int, default=2)
    command.add_argument("--invocations-per-instance", type=float, default=100,
                         help="auto-scaling target: invocations per instance per minute")
    add_skip_check(command)
    command.set_defaults(run=deploy)

    command = sub.add_parser("roll", parents=[common], help="move a live endpoint to a new image")
    command.add_argument("--endpoint", required=True)
    command.add_argument("--image", required=True)
    command.add_argument("--role", help="default: the current model's role")
    _model_source(command, required=False)
    add_skip_check(command)
    command.set_defaults(run=roll)
