"""Endpoint requests for the serving image: deploy (model, endpoint config, endpoint, auto-scaling)
in any hosting mode (hosting_modes), and the model helpers `roll` and `transform` share. deploy
first tags the image so that ECR's lifecycle policy keeps it (image_protection)."""
from byoc import contract
from byoc_cloud import arguments, container, hosting_modes, image_protection
from byoc_cloud.calls import Call, LaunchError, timestamped
from byoc_cloud.preflight import add_skip_check, preflight

TAGS = [{"Key": "project", "Value": "byoc"}]


def model_data(sagemaker, args) -> str:
    if args.model_data:
        return args.model_data
    job = sagemaker.describe_training_job(TrainingJobName=args.training_job)
    if job["TrainingJobStatus"] != "Completed":
        raise LaunchError(f"training job {args.training_job} is {job['TrainingJobStatus']}, not Completed")
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def model_request(name: str, image: str, data: str, role: str, env: dict[str, str] | None = None,
                  isolated: bool = False, multi_model: bool = False) -> dict:
    """CreateModel for the serving image: `data` is a model.tar.gz, or with `multi_model` the S3
    prefix whose model.tar.gz files the requests' TargetModel names."""
    primary = {"Image": image, "ModelDataUrl": data}
    if multi_model:
        primary["Mode"] = "MultiModel"
    if env:
        primary["Environment"] = env
    return {"ModelName": name, "ExecutionRoleArn": role, "Tags": TAGS, "PrimaryContainer": primary,
            "EnableNetworkIsolation": isolated}


def endpoint_calls(args, mode: str, model: dict, ami: dict[str, str]) -> list[Call]:
    """In order: model, endpoint config, endpoint, then the mode's auto-scaling. `ami`: the check's
    InferenceAmiVersion for GPU instance types whose default driver is too old."""
    name = model["ModelName"]
    config = {"EndpointConfigName": name, "ProductionVariants": [hosting_modes.variant(args, mode, name, ami)],
              **hosting_modes.config_fields(args, mode), "Tags": TAGS}
    return [
        ("sagemaker", "create_model", model),
        ("sagemaker", "create_endpoint_config", config),
        ("sagemaker", "create_endpoint", {"EndpointName": args.endpoint, "EndpointConfigName": name, "Tags": TAGS}),
        *hosting_modes.scaling_calls(args, mode, args.endpoint),
    ]


def deploy(args, clients, prices) -> list[Call]:
    mode = hosting_modes.mode_of(args)
    hosting_modes.check(args, mode)
    env = container.environment(args.env, "serving", mode)
    isolated = container.network_isolation(args, supported=mode != "serverless",
                                           why="serverless endpoints do not support network isolation")
    verdict = preflight(args, clients, mode, args.instance_type)
    if mode == "async":
        limit = contract.SERVING_SETTINGS[contract.MAX_PAYLOAD_SETTING]
        print(f"async requests may be up to 1 GB; the container takes bodies up to "
              f"{env.get(limit.name, limit.default)} MiB (--env {limit.name}=N raises it)")
    print(hosting_modes.estimate(prices, args, mode))
    data = args.multi_model or model_data(clients["sagemaker"], args)
    model = model_request(timestamped(args.endpoint), args.image, data, args.role, env, isolated,
                          multi_model=bool(args.multi_model))
    protect = image_protection.protect_calls(clients["ecr"], args.image, args.endpoint)
    return protect + endpoint_calls(args, mode, model, verdict.ami)


def add_model_source(command, required: bool, multi_model: bool = False) -> None:
    group = command.add_mutually_exclusive_group(required=required)
    group.add_argument("--model-data", type=arguments.MODEL_DATA_URL, metavar="S3_URI", help="a model.tar.gz")
    group.add_argument("--training-job", type=arguments.JOB_NAME, help="use this completed job's model")
    if multi_model:
        group.add_argument("--multi-model", metavar="S3_PREFIX",
                           help="a multi-model endpoint over every model.tar.gz under this prefix (ending in /)")


def add_commands(sub, common) -> None:
    command = sub.add_parser("deploy", parents=[common],
                             help="model, endpoint config, endpoint and auto-scaling: real-time, async, serverless "
                                  "or multi-model")
    command.add_argument("--image", required=True, type=arguments.IMAGE, help="serving image URI (python -m ecr uri byoc-serving)")
    command.add_argument("--role", required=True, type=arguments.ROLE_ARN)
    command.add_argument("--endpoint", required=True, type=arguments.ENDPOINT_NAME, help="the endpoint's name")
    add_model_source(command, required=True, multi_model=True)
    hosting_modes.add_arguments(command)
    container.add_arguments(command, "serving")
    add_skip_check(command)
    command.set_defaults(run=deploy)
