"""The ways one endpoint can host the serving image, as `deploy`'s flags choose them, with the
auto-scaling SageMaker supports for each:

- real-time (the default): instances, scaled on invocations per instance;
- async (--async-output S3_URI): requests queue in S3 and answers land in S3 (payloads up to 1 GB,
  up to an hour each); the instance count scales on ApproximateBacklogSizePerInstance, down to zero
  by default, and a step policy with a CloudWatch alarm on HasBacklogWithoutCapacity brings the
  first instance back as soon as a request waits (target tracking alone would wait until the
  backlog passed its target, AWS's "scale up from zero" recipe);
- serverless (--serverless-memory-mb M): no instances to choose, 1-6 GB of memory, CPUs only, no
  network isolation, 4 MB requests; SageMaker scales it, and auto-scaling moves provisioned
  concurrency (if asked for) on its utilization;
- multi-model (--multi-model S3_PREFIX): real-time, with every model.tar.gz under the prefix served
  by the same instances and chosen per request with TargetModel.
"""

from byoc_cloud import arguments
from byoc_cloud.calls import Answer, Call, LaunchError
from byoc_cloud.gpu_matrix import has_nvidia_gpu

VARIANT = "AllTraffic"
INSTANCES = "sagemaker:variant:DesiredInstanceCount"
PROVISIONED = "sagemaker:variant:DesiredProvisionedConcurrency"
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)  # "in 1 GB increments" (ServerlessConfig)
SERVERLESS_MAX_CONCURRENCY = 200
ASYNC_MAX_CONCURRENT_INVOCATIONS = 1000  # AsyncInferenceClientConfig's maximum
S3_URI = arguments.S3_PATTERN
INSTANCE_TYPE = "ml.m5.xlarge"
DEFAULTS = {"realtime": {"instance_type": INSTANCE_TYPE, "min_instances": 1, "max_instances": 2,
                         "invocations_per_instance": 100.0},
            "async": {"instance_type": INSTANCE_TYPE, "min_instances": 0, "max_instances": 2,  # scale to zero
                      "backlog_per_instance": 5.0},
            "serverless": {"max_concurrency": 20, "provisioned_utilization": 0.5}}
# Flags that mean something in one mode only: given in another, they are refused, not ignored.
ONLY_IN = {"realtime": ("invocations_per_instance",),
           "async": ("async_failure", "max_concurrent_invocations", "backlog_per_instance"),
           "serverless": ("max_concurrency", "provisioned_concurrency", "provisioned_utilization")}
INSTANCE_FLAGS = ("instance_type", "min_instances", "max_instances")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def mode_of(args) -> str:
    """realtime, async or serverless, from the flags; refuses flags the mode has no use for."""
    if args.serverless_memory_mb is not None and args.async_output is not None:
        raise LaunchError("--serverless-memory-mb and --async-output: an endpoint is serverless or async, not both")
    mode = "serverless" if args.serverless_memory_mb is not None else "async" if args.async_output else "realtime"
    for other, flags in ONLY_IN.items():
        given = [_flag(f) for f in flags if other != mode and getattr(args, f) is not None]
        if given:
            raise LaunchError(f"{', '.join(given)}: for {other} endpoints only; this one is {mode}")
    if mode == "serverless" and any(getattr(args, f) is not None for f in INSTANCE_FLAGS):
        raise LaunchError("serverless endpoints have no instances: drop --instance-type, --min-instances and "
                          "--max-instances (--max-concurrency bounds it)")
    for name, value in DEFAULTS[mode].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return mode


def _s3(flag: str, uri: str | None, folder: bool = False) -> None:
    if uri is not None and not S3_URI.fullmatch(uri):
        raise LaunchError(f"{flag} {uri!r}: expected s3://bucket/prefix")
    if uri is not None and folder and not uri.endswith("/"):
        raise LaunchError(f"{flag} {uri!r}: end it with / (the prefix that TargetModel names are relative to)")


def _check_serverless(args) -> None:
    if args.serverless_memory_mb not in SERVERLESS_MEMORY_MB:
        raise LaunchError(f"--serverless-memory-mb {args.serverless_memory_mb}: SageMaker offers "
                          f"{', '.join(map(str, SERVERLESS_MEMORY_MB))} MB")
    if not 1 <= args.max_concurrency <= SERVERLESS_MAX_CONCURRENCY:
        raise LaunchError(f"--max-concurrency {args.max_concurrency}: from 1 to {SERVERLESS_MAX_CONCURRENCY}")
    provisioned = args.provisioned_concurrency
    if provisioned is not None and not 1 <= provisioned <= args.max_concurrency:
        raise LaunchError(f"--provisioned-concurrency {provisioned}: from 1 to --max-concurrency "
                          f"({args.max_concurrency})")
    if not 0 < args.provisioned_utilization <= 1:
        raise LaunchError(f"--provisioned-utilization {args.provisioned_utilization}: a fraction in (0, 1]")
    if args.multi_model:
        raise LaunchError("--multi-model: serverless endpoints do not host multi-model endpoints")


def _check_instances(args, mode: str) -> None:
    if args.min_instances < (0 if mode == "async" else 1) or args.max_instances < max(1, args.min_instances):
        raise LaunchError(f"--min-instances {args.min_instances} and --max-instances {args.max_instances}: "
                          f"{'0 (scale to zero)' if mode == 'async' else '1'} <= min <= max, and max >= 1")
    for flag in ("invocations_per_instance", "backlog_per_instance"):  # auto-scaling targets
        if getattr(args, flag, None) is not None and getattr(args, flag) <= 0:
            raise LaunchError(f"{_flag(flag)} {getattr(args, flag):g}: an auto-scaling target must be above 0")
    invocations = args.max_concurrent_invocations
    if invocations is not None and not 1 <= invocations <= ASYNC_MAX_CONCURRENT_INVOCATIONS:
        raise LaunchError(f"--max-concurrent-invocations {args.max_concurrent_invocations}: from 1 to "
                          f"{ASYNC_MAX_CONCURRENT_INVOCATIONS} per instance")
    if args.multi_model and mode == "async":
        raise LaunchError("--multi-model with --async-output: InvokeEndpointAsync cannot name a TargetModel")
    if args.multi_model and has_nvidia_gpu(args.instance_type):
        raise LaunchError(f"--multi-model on {args.instance_type}: SageMaker's GPU multi-model endpoints take "
                          "Triton Inference Server containers only; use a CPU instance type")


def check(args, mode: str) -> None:
    """Everything SageMaker would refuse for this mode, refused here first."""
    _s3("--async-output", args.async_output)
    _s3("--async-failure", args.async_failure)
    _s3("--multi-model", args.multi_model, folder=True)
    if mode == "serverless":
        _check_serverless(args)
    else:
        _check_instances(args, mode)


def variant(args, mode: str, model: str, ami: dict[str, str]) -> dict:
    if mode == "serverless":
        config = {"MemorySizeInMB": args.serverless_memory_mb, "MaxConcurrency": args.max_concurrency}
        if args.provisioned_concurrency:
            config["ProvisionedConcurrency"] = args.provisioned_concurrency
        return {"VariantName": VARIANT, "ModelName": model, "ServerlessConfig": config}
    return {"VariantName": VARIANT, "ModelName": model, "InstanceType": args.instance_type,
            "InitialInstanceCount": max(1, args.min_instances), **ami}  # a new endpoint starts with one at least


def config_fields(args, mode: str) -> dict:
    """The endpoint config's fields beyond its variants."""
    if mode != "async":
        return {}
    output = {"S3OutputPath": args.async_output} | ({"S3FailurePath": args.async_failure} if args.async_failure
                                                    else {})
    client = {"ClientConfig": {"MaxConcurrentInvocationsPerInstance": args.max_concurrent_invocations}} \
        if args.max_concurrent_invocations else {}
    return {"AsyncInferenceConfig": {"OutputConfig": output, **client}}


def _target(endpoint: str, dimension: str, low: int, high: int) -> Call:
    return ("application-autoscaling", "register_scalable_target", {
        "ServiceNamespace": "sagemaker", "ResourceId": f"endpoint/{endpoint}/variant/{VARIANT}",
        "ScalableDimension": dimension, "MinCapacity": low, "MaxCapacity": high})


def _tracking(endpoint: str, dimension: str, name: str, target: float, metric: dict) -> Call:
    return ("application-autoscaling", "put_scaling_policy", {
        "PolicyName": f"{endpoint}-{name}", "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint}/variant/{VARIANT}", "ScalableDimension": dimension,
        "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": target, **metric, "ScaleOutCooldown": 60, "ScaleInCooldown": 300}})


def _scale_up_from_zero(endpoint: str) -> list[Call]:
    """AWS's recipe for async endpoints at zero instances: one instance as soon as a request waits."""
    policy = f"{endpoint}-scale-up-from-zero"
    return [
        ("application-autoscaling", "put_scaling_policy", {
            "PolicyName": policy, "ServiceNamespace": "sagemaker",
            "ResourceId": f"endpoint/{endpoint}/variant/{VARIANT}", "ScalableDimension": INSTANCES,
            "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 300,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}}),
        ("cloudwatch", "put_metric_alarm", {
            "AlarmName": f"{endpoint}-has-backlog-without-capacity",
            "AlarmDescription": f"requests wait for {endpoint}, which has no instances: start one ({policy})",
            "Namespace": "AWS/SageMaker", "MetricName": "HasBacklogWithoutCapacity",
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average", "Period": 60,
            "EvaluationPeriods": 2, "DatapointsToAlarm": 2, "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "missing",
            "AlarmActions": [Answer("put_scaling_policy", "PolicyARN")]}),
    ]


def scaling_calls(args, mode: str, endpoint: str) -> list[Call]:
    if mode == "serverless":
        if not args.provisioned_concurrency:
            return []  # SageMaker scales on-demand serverless endpoints itself
        metric = {"PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantProvisionedConcurrencyUtilization"}}
        return [_target(endpoint, PROVISIONED, 1, args.provisioned_concurrency),
                _tracking(endpoint, PROVISIONED, "provisioned-concurrency", args.provisioned_utilization, metric)]
    calls = [_target(endpoint, INSTANCES, args.min_instances, args.max_instances)]
    if mode == "realtime":
        metric = {"PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
        return calls + [_tracking(endpoint, INSTANCES, "invocations-per-instance", args.invocations_per_instance,
                                  metric)]
    metric = {"CustomizedMetricSpecification": {
        "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average"}}
    calls.append(_tracking(endpoint, INSTANCES, "backlog-per-instance", args.backlog_per_instance, metric))
    return calls + (_scale_up_from_zero(endpoint) if args.min_instances == 0 else [])


def estimate(prices, args, mode: str) -> str:
    if mode == "serverless":
        return prices.serverless_estimate(args.serverless_memory_mb, args.provisioned_concurrency or 0)
    return prices.hosting_estimate(args.instance_type, args.min_instances, args.max_instances)


def add_arguments(command) -> None:
    """deploy's hosting flags; None means "not given", so that a flag of another mode is refused."""
    command.add_argument("--instance-type", type=arguments.HOSTING_INSTANCE, help=f"default {INSTANCE_TYPE} (not for serverless)")
    command.add_argument("--min-instances", type=int, help="default 1; async: 0 (scale to zero)")
    command.add_argument("--max-instances", type=int, help="default 2")
    command.add_argument("--invocations-per-instance", type=arguments.finite,
                         help="real-time auto-scaling target: invocations per instance per minute (default 100)")
    group = command.add_argument_group("async endpoints")
    group.add_argument("--async-output", metavar="S3_URI", help="an async endpoint: its answers go here")
    group.add_argument("--async-failure", metavar="S3_URI", help="where failed requests' errors go")
    group.add_argument("--max-concurrent-invocations", type=int, help="requests per instance at once (1-1000)")
    group.add_argument("--backlog-per-instance", type=arguments.finite,
                       help="auto-scaling target: queued requests per instance (default 5)")
    group = command.add_argument_group("serverless endpoints")
    group.add_argument("--serverless-memory-mb", type=int, help="a serverless endpoint: 1024, 2048, ... 6144")
    group.add_argument("--max-concurrency", type=int, help="concurrent requests it serves (1-200, default 20)")
    group.add_argument("--provisioned-concurrency", type=int,
                       help="kept warm (1 to --max-concurrency); auto-scaling moves it between 1 and this")
    group.add_argument("--provisioned-utilization", type=arguments.finite,
                       help="auto-scaling target for provisioned concurrency's utilization (default 0.5)")
