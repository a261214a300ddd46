"""CreateTrainingJob requests for the training image: channels, hyperparameters, spot, checkpoints."""
import json
import sys

from byoc.contract import encode_hyperparameters
from byoc.training import hyperparameters as table
from byoc.training.channels import ELSEWHERE, OPTIONAL, REQUIRED as REQUIRED_CHANNELS
from byoc.training.metrics import METRIC_DEFINITIONS  # plain data: no torch needed
from byoc_cloud import arguments, container, follow
from byoc_cloud.calls import LaunchError, check_calls, timestamped
from byoc_cloud.preflight import add_skip_check, preflight


def hyperparameters(pairs: list[str]) -> dict[str, str]:
    """--hp epochs=10 --hp model=resnet_small -> SageMaker's encoding (byoc.contract): a value that
    reads as JSON is that JSON value, anything else the string itself; a text field (a file name)
    is always its text, so pretrained_weights=1e5 names the file 1e5, not 100000.0."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise LaunchError(f"hyperparameter {pair!r}: expected NAME=VALUE")
        if key in table.FIELDS and table.FIELDS[key].type is str:
            values[key] = text
            continue
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return encode_hyperparameters(values)


def check_hyperparameters(encoded: dict[str, str], tuned: dict | None = None, what: str = "these hyperparameters") -> None:
    """The training image's own parse (byoc.training.hyperparameters) of what a job would get: a value
    the image would refuse, after the instances had started, is refused here."""
    try:
        table.parse({name: json.loads(text) for name, text in encoded.items()} | (tuned or {}))
    except table.HyperparameterError as error:
        raise LaunchError(f"the training image would refuse {what}: {error}") from None


def channels(pairs: list[str]) -> list[dict]:
    names = [pair.partition("=")[0] for pair in pairs]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise LaunchError(f"--channel {', '.join(duplicates)} given more than once: a job has one channel of a name")
    if missing := [name for name in REQUIRED_CHANNELS if name not in names]:
        raise LaunchError(f"no {', '.join(missing)} channel: the training image needs --channel "
                          f"{missing[0]}=s3://bucket/prefix")
    _check_names(names)
    out = []
    for pair in pairs:
        name, sep, uri = pair.partition("=")
        if not sep or not arguments.S3_PATTERN.fullmatch(uri):
            raise LaunchError(f"channel {pair!r}: expected NAME=s3://bucket/prefix, the bucket 3-63 lower-case "
                              "letters, digits, dots and hyphens")
        out.append({"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}})
    return out


def _check_names(names: list[str]) -> None:
    """Only channels the image reads: another name (a typo, 'eval') would be copied and never read."""
    read = [*REQUIRED_CHANNELS, *(alias for aliases in OPTIONAL.values() for alias in aliases), *ELSEWHERE]
    if unread := [name for name in names if name not in read]:
        raise LaunchError(f"--channel {unread[0]}: the training image reads no such channel; it reads "
                          f"{', '.join(read)}")
    for ours, aliases in OPTIONAL.items():
        if len(given := [name for name in names if name in aliases]) > 1:
            raise LaunchError(f"--channel {' and '.join(given)}: the training image reads one {ours} channel "
                              f"(either name); give one")


def stopping_condition(args) -> dict:
    max_run = int(args.max_run_hours * 3600)
    condition = {"MaxRuntimeInSeconds": max_run}
    if args.spot:
        max_wait = int(args.max_wait_hours * 3600) if args.max_wait_hours else 2 * max_run
        if max_wait < max_run:
            raise LaunchError(f"--max-wait-hours ({args.max_wait_hours}) must be at least --max-run-hours "
                              f"({args.max_run_hours}): it counts the training time plus the waits for capacity")
        condition["MaxWaitTimeInSeconds"] = max_wait
        if not args.checkpoint_s3_uri:
            print("warning: spot training without --checkpoint-s3-uri starts over after every interruption",
                  file=sys.stderr)
    elif args.max_wait_hours is not None:
        raise LaunchError("--max-wait-hours applies to --spot training only")
    return condition


def training_request(args) -> dict:
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
        "StoppingCondition": stopping_condition(args),
        "EnableManagedSpotTraining": args.spot,
        "EnableNetworkIsolation": container.network_isolation(args),
        "Tags": [{"Key": "project", "Value": "byoc"}],
    }
    env = container.environment(args.env, "training")
    if env:
        request["Environment"] = env
    if args.checkpoint_s3_uri:
        request["CheckpointConfig"] = {"S3Uri": args.checkpoint_s3_uri, "LocalPath": "/opt/ml/checkpoints"}
    return request


def launch(args, clients, prices) -> list:
    request = training_request(args)
    check_hyperparameters(request["HyperParameters"])
    args.job_name = request["TrainingJobName"]  # the name --wait follows
    calls = [("sagemaker", "create_training_job", request)]
    check_calls(calls, clients)  # refused as the API model says before the check reads ECR
    preflight(args, clients, "training", args.instance_type)
    print(prices.training_estimate(args.instance_type, args.instance_count,
                                   request["StoppingCondition"]["MaxRuntimeInSeconds"], args.spot))
    return calls


def add_job_arguments(command, required: bool = True) -> None:
    """What a training job needs: train's flags, shared with tune (each of its trials is such a job)."""
    command.add_argument("--image", required=required, type=arguments.IMAGE, help="training image URI (python -m ecr uri byoc-training)")
    command.add_argument("--role", required=required, type=arguments.ROLE_ARN, help="the SageMaker execution role's ARN")
    command.add_argument("--channel", action="append", required=required, metavar="NAME=S3_URI",
                         help="an input channel, e.g. train=s3://bucket/fashion-mnist/train (repeatable)")
    command.add_argument("--output", required=required, type=arguments.s3_uri, metavar="S3_URI", help="where model.tar.gz goes")
    command.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE", help="a hyperparameter")
    command.add_argument("--instance-type", default="ml.g5.xlarge", type=arguments.TRAINING_INSTANCE)
    command.add_argument("--instance-count", type=arguments.count, default=1)
    command.add_argument("--volume-gb", type=arguments.count, default=50)
    command.add_argument("--max-run-hours", type=arguments.positive, default=2)
    command.add_argument("--spot", action="store_true", help="managed spot training")
    command.add_argument("--max-wait-hours", type=arguments.positive, help="spot: training plus waiting (default: 2 x max run)")
    command.add_argument("--checkpoint-s3-uri", type=arguments.s3_uri, help="synced with /opt/ml/checkpoints: resume after interruptions")


def add_commands(sub, common) -> None:
    train = sub.add_parser("train", parents=[common], help="start a training job")
    add_job_arguments(train)
    train.add_argument("--job-name", type=arguments.JOB_NAME)
    train.add_argument("--wait", dest="then", action="store_const", const=follow.follow_training_job,
                       help="follow the job: its status, secondary status and log lines until it ends")
    train.add_argument("--poll-seconds", type=arguments.positive, default=10, help="--wait: seconds between looks")
    container.add_arguments(train, "training")
    add_skip_check(train)
    train.set_defaults(run=launch)
