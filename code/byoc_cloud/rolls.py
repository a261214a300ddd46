"""byoc-cloud roll: move a live endpoint to a new image, keeping everything else, with blue/green
traffic shifting and automatic rollback on CloudWatch alarms the command creates.

The new models and endpoint config are copies of the live ones: every field that describe_model
and describe_endpoint_config return and create_model and create_endpoint_config take is carried
over (the container's Environment and Mode, VpcConfig, network isolation; async, serverless, data
capture, KMS, shadow variants, ...), read off botocore's model of the API so that fields SageMaker
adds later are carried too, and the tags with them. Only the image (and the model data, if given)
and the names change. Variant names and instance types stay, so auto-scaling keeps working, and
RetainAllVariantProperties keeps the instance counts it set.

The update is a blue/green deployment: all at once, a canary (--canary PERCENT) or linear steps
(--linear PERCENT), each step baked for --bake-minutes and the full traffic baked as long again
before the old fleet goes. Two alarms per variant watch it: the 5xx rate of the whole variant and
the new fleet's model latency. Either one tripping sends all traffic back to the old fleet.
"""
import math

from byoc_cloud import arguments, endpoints, image_protection
from byoc_cloud.calls import Call, LaunchError, timestamped
from byoc_cloud.preflight import add_skip_check, preflight

PROVISIONING_S = 1800  # allowance for the new fleet to start, within the deployment's time limit
MAX_DEPLOYMENT_S = 28800  # BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds' maximum
ALARM_PERIOD_S, ALARM_PERIODS, ALARM_BREACHES = 60, 3, 2  # 2 bad minutes out of 3 trip an alarm
ROLLBACK_FLAGS = ("canary", "linear", "bake_minutes", "max_error_percent", "max_latency_ms")
DEFAULTS = {"bake_minutes": 10, "max_error_percent": 1.0, "max_latency_ms": 1000.0}


def copied(shape, value):
    """A describe response cut down to what a create request's `shape` takes (recursively);
    empty structures are left out (moto describes a config without data capture with {})."""
    if shape.type_name == "structure" and isinstance(value, dict):
        out = {name: copied(member, value[name]) for name, member in shape.members.items() if name in value}
        return {name: item for name, item in out.items() if item != {}}
    if shape.type_name == "list" and isinstance(value, list):
        return [copied(shape.member, item) for item in value]
    return value


def _input_shape(sagemaker, operation: str):
    return sagemaker.meta.service_model.operation_model(operation).input_shape


def _tags(sagemaker, arn: str) -> list[dict]:
    """The resource's own tags (aws:* ones are SageMaker's and cannot be set), and the kit's."""
    tags = [t for t in sagemaker.list_tags(ResourceArn=arn).get("Tags", []) if not t["Key"].startswith("aws:")]
    return tags + [t for t in endpoints.TAGS if t["Key"] not in {k["Key"] for k in tags}]


def model_copy(sagemaker, args, old_name: str, new_name: str, data: str | None) -> dict:
    """create_model for a copy of model `old_name` with the new image (and `data`, if given)."""
    old = sagemaker.describe_model(ModelName=old_name)
    request = copied(_input_shape(sagemaker, "CreateModel"), old) | {"ModelName": new_name}
    if "PrimaryContainer" not in request:
        count = len(request.get("Containers", []))
        raise LaunchError(f"model {old_name} has {count} containers (an inference pipeline or a multi-container "
                          "endpoint); roll changes the image of a single-container model only")
    container = request["PrimaryContainer"] | {"Image": args.image}
    if data:
        container = {k: v for k, v in container.items() if k != "ModelDataSource"} | {"ModelDataUrl": data}
    request["PrimaryContainer"] = container
    if args.role:
        request["ExecutionRoleArn"] = args.role
    request["Tags"] = _tags(sagemaker, old["ModelArn"])
    return request


def mode_of(config: dict, variant: dict) -> str:
    if "ServerlessConfig" in variant:
        return "serverless"
    return "async" if "AsyncInferenceConfig" in config else "realtime"


def _alarm(endpoint: str, variant: str, kind: str, metric: str, threshold: float, extra: list[dict]) -> Call:
    return ("cloudwatch", "put_metric_alarm", {
        "AlarmName": f"{endpoint}-{variant}-{kind}", "Namespace": "AWS/SageMaker", "MetricName": metric,
        "AlarmDescription": f"byoc-cloud roll rolls {endpoint} back when this trips ({kind})",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant},
                       *extra],
        "Statistic": "Average", "Period": ALARM_PERIOD_S, "EvaluationPeriods": ALARM_PERIODS,
        "DatapointsToAlarm": ALARM_BREACHES, "Threshold": threshold, "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching", "Tags": endpoints.TAGS})


def alarm_calls(args, endpoint: str, variants: list[str], new_config: str) -> list[Call]:
    """Per variant: its 5xx rate (Invocation5XXErrors is 1 per 5xx answer, 0 otherwise, so its average
    is the rate) over both fleets, and the new fleet's ModelLatency (microseconds), as AWS's
    deployment guardrails examples do."""
    calls = []
    for variant in variants:
        calls.append(_alarm(endpoint, variant, "5xx-rate", "Invocation5XXErrors", args.max_error_percent / 100, []))
        calls.append(_alarm(endpoint, variant, "model-latency", "ModelLatency", args.max_latency_ms * 1000,
                            [{"Name": "EndpointConfigName", "Value": new_config}]))
    return calls


def deployment_config(args, alarms: list[str]) -> dict:
    bake = args.bake_minutes * 60
    if args.canary:
        routing, steps = {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": args.canary},
                          "WaitIntervalInSeconds": bake}, 1
    elif args.linear:
        routing, steps = {"Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": args.linear},
                          "WaitIntervalInSeconds": bake}, math.ceil(100 / args.linear)
    else:  # all at once: the bake is the wait before the old fleet goes
        routing, steps = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}, 0
    timeout = PROVISIONING_S + steps * bake + bake
    if timeout > MAX_DEPLOYMENT_S:
        raise LaunchError(f"{steps} steps of {args.bake_minutes} minutes take longer than SageMaker's "
                          f"{MAX_DEPLOYMENT_S // 3600} h limit for one deployment: shorten --bake-minutes or "
                          "take larger --linear steps")
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": bake,
                                      "MaximumExecutionTimeoutInSeconds": timeout},
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]}}


def check_rollback_flags(args) -> None:
    given = [f"--{f.replace('_', '-')}" for f in ROLLBACK_FLAGS if getattr(args, f) is not None]
    if args.no_rollback:
        if given:
            raise LaunchError(f"{', '.join(given)} with --no-rollback: these shape the rollback it turns off")
        return
    for name, value in DEFAULTS.items():
        setattr(args, name, value if getattr(args, name) is None else getattr(args, name))
    if args.canary is not None and not 1 <= args.canary <= 50:
        raise LaunchError(f"--canary {args.canary}: 1 to 50 percent of the new fleet (SageMaker's limit)")
    if args.linear is not None and not 10 <= args.linear <= 50:
        raise LaunchError(f"--linear {args.linear}: steps of 10 to 50 percent of the new fleet (SageMaker's limit)")
    if not ALARM_PERIODS <= args.bake_minutes <= 60:
        raise LaunchError(f"--bake-minutes {args.bake_minutes}: {ALARM_PERIODS} (what the alarms need to judge) "
                          "to 60")
    if not 0 <= args.max_error_percent < 100 or args.max_latency_ms <= 0:
        raise LaunchError("--max-error-percent is a percentage in [0, 100) and --max-latency-ms a positive number")


def variant_ami(variant: dict, mode: str, check) -> dict:
    """The AMI override for a variant: of its instance type, or of every instance pool of a
    heterogeneous variant (InstancePools), which takes one InferenceAmiVersion for them all."""
    types = [pool["InstanceType"] for pool in variant.get("InstancePools", [])] or [variant.get("InstanceType")]
    amis = {instance_type: check(mode, instance_type) for instance_type in types}
    if len({tuple(ami.items()) for ami in amis.values()}) > 1:
        needs = "; ".join(f"{t}: {ami.get('InferenceAmiVersion', 'the default AMI')}" for t, ami in amis.items())
        raise LaunchError(f"variant {variant['VariantName']}'s instance pools need different AMIs ({needs}), and a "
                          "variant has one InferenceAmiVersion: roll it with --skip-check and set the AMI yourself")
    return next(iter(amis.values()))


def roll_calls(sagemaker, args, check=lambda mode, instance_type: {}) -> list[Call]:
    """The copies, the alarms and update_endpoint. check(mode, instance_type) gives each variant the
    AMI override the new image needs there."""
    endpoint = sagemaker.describe_endpoint(EndpointName=args.endpoint)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    name, variants = timestamped(args.endpoint), config["ProductionVariants"]
    data = endpoints.model_data(sagemaker, args) if (args.model_data or args.training_job) else None
    calls, new_variants = [], []
    for variant in variants:
        model = name if len(variants) == 1 else f"{name[:50]}-{variant['VariantName'][:12]}"
        calls.append(("sagemaker", "create_model", model_copy(sagemaker, args, variant["ModelName"], model, data)))
        new_variants.append(variant | {"ModelName": model} | variant_ami(variant, mode_of(config, variant), check))
    new_config = copied(_input_shape(sagemaker, "CreateEndpointConfig"), config | {"ProductionVariants": new_variants})
    new_config |= {"EndpointConfigName": name, "Tags": _tags(sagemaker, config["EndpointConfigArn"])}
    calls.append(("sagemaker", "create_endpoint_config", new_config))
    update = {"EndpointName": args.endpoint, "EndpointConfigName": name, "RetainAllVariantProperties": True}
    if not args.no_rollback:
        alarms = alarm_calls(args, args.endpoint, [v["VariantName"] for v in variants], name)
        calls += alarms
        update["DeploymentConfig"] = deployment_config(args, [request["AlarmName"] for _, _, request in alarms])
    return calls + [("sagemaker", "update_endpoint", update)]


def roll(args, clients, prices) -> list[Call]:
    check_rollback_flags(args)
    calls = roll_calls(clients["sagemaker"], args,
                       check=lambda mode, instance_type: preflight(args, clients, mode, instance_type).ami)
    for _, _, request in calls:
        for variant in request.get("ProductionVariants", []):
            if "ServerlessConfig" in variant:
                serverless = variant["ServerlessConfig"]
                cost = prices.serverless_estimate(serverless["MemorySizeInMB"],
                                                  serverless.get("ProvisionedConcurrency", 0))
            else:
                count = variant["InitialInstanceCount"]
                cost = prices.hosting_estimate(variant["InstanceType"], count, count)
            print(f"{variant['VariantName']}: {cost}")
    if not args.no_rollback:
        print(f"blue/green: the old fleet keeps running until the new one has baked "
              f"({args.bake_minutes} min per step, and as long at full traffic)")
    return image_protection.protect_calls(clients["ecr"], args.image, args.endpoint) + calls


def add_commands(sub, common) -> None:
    command = sub.add_parser("roll", parents=[common],
                             help="move a live endpoint to a new image (blue/green, automatic rollback)")
    command.add_argument("--endpoint", required=True, type=arguments.ENDPOINT_NAME)
    command.add_argument("--image", required=True, type=arguments.IMAGE)
    command.add_argument("--role", type=arguments.ROLE_ARN, help="default: the current model's role")
    endpoints.add_model_source(command, required=False)
    shift = command.add_mutually_exclusive_group()
    shift.add_argument("--canary", type=int, metavar="PERCENT", help="first this share of the new fleet (1-50)")
    shift.add_argument("--linear", type=int, metavar="PERCENT", help="shift traffic in steps of this share (10-50)")
    command.add_argument("--bake-minutes", type=int, help="watch each step this long (3-60, default 10)")
    command.add_argument("--max-error-percent", type=arguments.finite, help="roll back above this 5xx rate (default 1)")
    command.add_argument("--max-latency-ms", type=arguments.finite,
                         help="roll back above this average model latency of the new fleet (default 1000)")
    command.add_argument("--no-rollback", action="store_true",
                         help="no alarms, no baking: SageMaker's plain update (all traffic at once)")
    add_skip_check(command)
    command.set_defaults(run=roll)
