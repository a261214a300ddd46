"""byoc-cloud transform: a batch transform job that scores every object under an S3 prefix with the
serving image, writing S3OutputPath/<key>.out for each input object <key>.

Two input layouts:
- one image per object (--split None, the default): JPEG and PNG alike with ContentType
  application/x-image, answered with one JSON document per image;
- JSON Lines (--split Line): one {"image": "<base64>"} per line, ContentType application/json
  (or application/jsonlines), answered one JSON document per line, in order (AssembleWith Line),
  also when MultiRecord packs many lines into one request; a line the image cannot read is
  answered by an error line.

BatchStrategy, MaxPayloadInMB and MaxConcurrentTransforms are sent only when given: otherwise
SageMaker asks the container (GET /execution-parameters: MultiRecord, the serving image's payload
limit, and workers x batch size concurrent requests within the bound below). When given they are held to SageMaker's limits: a payload
of at most 100 MB, and concurrency x payload at most 100 MB.
"""
from byoc import contract
from byoc_cloud import arguments, container, endpoints
from byoc_cloud.calls import Call, LaunchError, timestamped
from byoc_cloud.hosting_modes import S3_URI
from byoc_cloud.preflight import add_skip_check, preflight

MAX_PAYLOAD_MB = contract.MAX_BATCH_PAYLOAD_MB  # also of MaxConcurrentTransforms x MaxPayloadInMB
SPLITS = {"None": "application/x-image", "Line": contract.JSON_TYPE}  # split type -> default content type


def _check(args) -> None:
    for flag, uri in (("--input", args.input), ("--output", args.output)):
        if not S3_URI.fullmatch(uri):
            raise LaunchError(f"{flag} {uri!r}: expected s3://bucket/prefix")
    allowed = contract.CONTENT_TYPES if args.split == "None" else (contract.JSON_TYPE, contract.JSON_LINES_TYPE)
    if contract.CONTENT_TYPE_ALIASES.get(args.content_type.lower(), args.content_type.lower()) not in allowed:
        raise LaunchError(f"--content-type {args.content_type} with --split {args.split}: the serving image takes "
                          f"{', '.join(allowed)} here")
    payload, concurrency = args.max_payload_mb, args.max_concurrent_transforms
    if payload is not None and not 1 <= payload <= MAX_PAYLOAD_MB:
        raise LaunchError(f"--max-payload-mb {payload}: 1 to {MAX_PAYLOAD_MB} (0, chunked bodies of any size, is "
                          "not for this image: it bounds every body)")
    if concurrency is not None and not 1 <= concurrency <= MAX_PAYLOAD_MB:
        raise LaunchError(f"--max-concurrent-transforms {concurrency}: 1 to {MAX_PAYLOAD_MB}")
    if payload and concurrency and payload * concurrency > MAX_PAYLOAD_MB:
        raise LaunchError(f"--max-concurrent-transforms {concurrency} x --max-payload-mb {payload} = "
                          f"{payload * concurrency} MB; SageMaker allows at most {MAX_PAYLOAD_MB} MB per instance")
    if args.instance_count < 1:
        raise LaunchError(f"--instance-count {args.instance_count}: at least 1")


def transform_request(args, model: str, env: dict[str, str], ami: dict[str, str]) -> dict:
    request = {
        "TransformJobName": args.job_name, "ModelName": model,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": args.input}},
                           "ContentType": args.content_type, "SplitType": args.split, "CompressionType": "None"},
        "TransformOutput": {"S3OutputPath": args.output, "Accept": contract.RESPONSE_TYPE,
                            "AssembleWith": "Line" if args.split == "Line" else "None"},
        "TransformResources": {"InstanceType": args.instance_type, "InstanceCount": args.instance_count, **ami},
        "Tags": endpoints.TAGS,
    }
    for field, value in (("BatchStrategy", args.batch_strategy), ("MaxPayloadInMB", args.max_payload_mb),
                         ("MaxConcurrentTransforms", args.max_concurrent_transforms), ("Environment", env)):
        if value:
            request[field] = value
    return request


def launch(args, clients, prices) -> list[Call]:
    args.content_type = SPLITS[args.split] if args.content_type is None else args.content_type
    _check(args)
    env = container.environment(args.env, "serving", "batch")
    isolated = container.network_isolation(args)
    verdict = preflight(args, clients, "batch", args.instance_type)
    unset = [f for f, v in (("BatchStrategy", args.batch_strategy), ("MaxPayloadInMB", args.max_payload_mb),
                            ("MaxConcurrentTransforms", args.max_concurrent_transforms)) if v is None]
    if unset:
        print(f"{', '.join(unset)}: not set, so SageMaker asks the container (GET /execution-parameters: "
              "MultiRecord, its payload limit, workers x batch size requests at a time)")
    print(prices.transform_estimate(args.instance_type, args.instance_count))
    args.job_name = args.job_name or timestamped("byoc-transform")  # also the name a --wait would follow
    data = endpoints.model_data(clients["sagemaker"], args)
    model = endpoints.model_request(args.job_name, args.image, data, args.role, isolated=isolated)
    return [("sagemaker", "create_model", model),
            ("sagemaker", "create_transform_job", transform_request(args, args.job_name, env, verdict.ami))]


def add_commands(sub, common) -> None:
    command = sub.add_parser("transform", parents=[common],
                             help="a batch transform job: score every image under an S3 prefix")
    command.add_argument("--image", required=True, type=arguments.IMAGE, help="serving image URI (python -m ecr uri byoc-serving)")
    command.add_argument("--role", required=True, type=arguments.ROLE_ARN, help="the SageMaker execution role's ARN")
    endpoints.add_model_source(command, required=True)
    command.add_argument("--input", required=True, metavar="S3_PREFIX", help="the objects to score")
    command.add_argument("--output", required=True, metavar="S3_URI", help="where <key>.out answers go")
    command.add_argument("--instance-type", default="ml.m5.xlarge", type=arguments.TRANSFORM_INSTANCE)
    command.add_argument("--instance-count", type=int, default=1)
    command.add_argument("--split", choices=tuple(SPLITS), default="None",
                         help="None: one image per object; Line: JSON Lines of {\"image\": \"<base64>\"}")
    command.add_argument("--content-type", help="default application/x-image (--split None: JPEG and PNG alike; "
                                                "image/jpeg or image/png refuse the other), application/json "
                                                "(--split Line)")
    command.add_argument("--batch-strategy", choices=("SingleRecord", "MultiRecord"),
                         help="with --split Line: one line per request, or as many as fit (default: the container's)")
    command.add_argument("--max-payload-mb", type=int, help="largest request (1-100; default: the container's)")
    command.add_argument("--max-concurrent-transforms", type=int,
                         help="requests at once per instance (default: the container's)")
    command.add_argument("--job-name", type=arguments.JOB_NAME)
    container.add_arguments(command, "serving")
    add_skip_check(command)
    command.set_defaults(run=launch)
    # --wait: issue 17's follow module follows jobs by name; launch() sets args.job_name for it, and a
    # transform job logs to /aws/sagemaker/TransformJobs, one stream per instance (JOB/<instance id>).
