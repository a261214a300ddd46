"""byoc-cloud lambda deploy | update | delete: the endpoint Lambda (lambda_package), its role, limits,
URL, alarms and log group.

Least privilege: the function's role trusts lambda.amazonaws.com only and has one inline policy:
sagemaker:InvokeEndpoint on the one endpoint's ARN, and logs:CreateLogStream / logs:PutLogEvents
on its own log group (/aws/lambda/NAME, in the `log-group:NAME:*` form CloudWatch Logs documents
for IAM policies: the stream names are Lambda's). No managed policy, no wildcard action, no other
resource. The CLI creates the log group itself (with its retention), so the role needs no
logs:CreateLogGroup. The function URL takes AWS_IAM auth (SigV4), never NONE; each --url-invoker gets
lambda:InvokeFunctionUrl and lambda:InvokeFunction (both needed by URLs created since October 2025), the
second only when invoked through the URL.

The function's environment says which endpoint it calls and of what type: real-time or
serverless, read from the endpoint's config, sets the image limit (contract.MAX_INVOKE_BYTES).
Asynchronous and multi-model endpoints are refused: InvokeEndpoint without TargetModel or S3
cannot reach them.
"""
import json
import re

from botocore.exceptions import ClientError

from byoc import contract
from byoc_cloud import arguments, lambda_package
from byoc_cloud.calls import Call, LaunchError

RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                  3288, 3653)  # what CloudWatch Logs accepts (moto accepts any number)
MAX_TIMEOUT_S = 900
MEMORY_MB = (128, 10240)
ALARMS = {"errors": "Errors", "throttles": "Throttles"}
POLICY_NAME = "invoke-endpoint-and-write-logs"
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SNS_TOPIC = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
TAGS = {"project": "byoc"}


def role_name(function: str) -> str:
    return f"{function[:59]}-role"


def log_group(function: str) -> str:
    return f"/aws/lambda/{function}"


def trust_policy() -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def role_policy(endpoint_arn: str, function: str) -> dict:
    """The endpoint's ARN and the function's own log group: nothing else."""
    _, partition, _, region, account = endpoint_arn.split(":")[:5]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeTheEndpoint", "Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
         "Resource": endpoint_arn},
        {"Sid": "WriteItsOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:{partition}:logs:{region}:{account}:log-group:{log_group(function)}:*"},
    ]}


def endpoint_facts(sagemaker, name: str) -> tuple[str, str]:
    """(ARN, type) of a live endpoint the function can call: real-time or serverless."""
    endpoint = sagemaker.describe_endpoint(EndpointName=name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    if config.get("AsyncInferenceConfig"):
        raise LaunchError(f"endpoint {name} is asynchronous (InvokeEndpointAsync, answers in S3): the Lambda calls "
                          "real-time and serverless endpoints")
    variants = config["ProductionVariants"]
    for variant in variants:
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        if model.get("PrimaryContainer", {}).get("Mode") == "MultiModel":
            raise LaunchError(f"endpoint {name} serves several models (a multi-model endpoint): the Lambda sends no "
                              "TargetModel")
    serverless = all(v.get("ServerlessConfig") for v in variants)
    return endpoint["EndpointArn"], "serverless" if serverless else "realtime"


def check_names(args) -> None:
    if getattr(args, "url_invoker", []) and not args.function_url:
        raise LaunchError("--url-invoker without --function-url: there is no URL to allow it to call")
    if not FUNCTION_NAME.fullmatch(args.function_name):
        raise LaunchError(f"--function-name {args.function_name!r}: 1 to 64 letters, digits, hyphens or underscores")
    for topic in getattr(args, "alarm_topic", []):
        if not SNS_TOPIC.fullmatch(topic):
            raise LaunchError(f"--alarm-topic {topic!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")


def check_given(args) -> None:
    """Each value given, alone: update checks them before it reads what the function has."""
    check_names(args)
    if args.timeout is not None and not 1 <= args.timeout <= MAX_TIMEOUT_S:
        raise LaunchError(f"--timeout {args.timeout}: Lambda allows 1 to {MAX_TIMEOUT_S} s")
    if args.memory is not None and not MEMORY_MB[0] <= args.memory <= MEMORY_MB[1]:
        raise LaunchError(f"--memory {args.memory}: Lambda allows {MEMORY_MB[0]} to {MEMORY_MB[1]} MB")
    if args.reserved_concurrency is not None and args.reserved_concurrency < 0:
        raise LaunchError("--reserved-concurrency must be 0 (no invocations) or more")
    if args.log_retention_days is not None and args.log_retention_days not in RETENTION_DAYS:
        raise LaunchError(f"--log-retention-days {args.log_retention_days}: CloudWatch Logs keeps logs for one of "
                          f"{', '.join(map(str, RETENTION_DAYS))} days")


def check_settings(args) -> None:
    check_given(args)
    if args.timeout < args.fetch_timeout + args.invoke_timeout + 5:
        raise LaunchError(f"--timeout {args.timeout} s leaves no time to answer: the fetch ({args.fetch_timeout:g} s) "
                          f"and the endpoint ({args.invoke_timeout:g} s) may take {args.fetch_timeout + args.invoke_timeout:g} s; "
                          "give at least 5 s more")


def environment(args, kind: str) -> dict:
    return {"Variables": {"ENDPOINT_NAME": args.endpoint, "ENDPOINT_TYPE": kind,
                          "FETCH_TIMEOUT_S": f"{args.fetch_timeout:g}", "INVOKE_TIMEOUT_S": f"{args.invoke_timeout:g}"}}


def alarm_calls(args) -> list[Call]:
    """Errors (crashes and timeouts: answers with a 4xx/5xx status are not errors to Lambda) and throttles
    (reserved concurrency reached), each alarming on one in five minutes."""
    calls = []
    for suffix, metric in ALARMS.items():
        calls.append(("cloudwatch", "put_metric_alarm", {
            "AlarmName": f"{args.function_name}-{suffix}", "Namespace": "AWS/Lambda", "MetricName": metric,
            "Dimensions": [{"Name": "FunctionName", "Value": args.function_name}], "Statistic": "Sum",
            "Period": 300, "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching", "AlarmActions": args.alarm_topic,
            "AlarmDescription": f"{metric} of the byoc endpoint function {args.function_name}",
            "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()]}))
    return calls


def access_calls(args, endpoint_arn: str, role_exists: bool) -> list[Call]:
    role = role_name(args.function_name)
    calls = [] if role_exists else [("iam", "create_role", {
        "RoleName": role, "AssumeRolePolicyDocument": json.dumps(trust_policy()),
        "Description": f"runs the byoc endpoint function {args.function_name}",
        "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()]})]
    return calls + [("iam", "put_role_policy", {"RoleName": role, "PolicyName": POLICY_NAME,
                                                "PolicyDocument": json.dumps(role_policy(endpoint_arn, args.function_name))})]


def url_calls(args) -> list[Call]:
    if not args.function_url:
        return []
    calls = [("lambda", "create_function_url_config", {"FunctionName": args.function_name, "AuthType": "AWS_IAM"})]
    for i, principal in enumerate(args.url_invoker):  # other accounts; this account's callers need an IAM policy
        calls += url_grant_calls(args.function_name, principal, i + 1)
    return calls


def url_grant_calls(function: str, principal: str, number: int) -> list[Call]:
    """What a principal needs to call the URL: since October 2025 a new function URL takes both
    lambda:InvokeFunctionUrl and lambda:InvokeFunction (Lambda's "Control access to function URLs"); the
    second only through the URL (InvokedViaFunctionUrl), so the grant is no direct invoke."""
    return [("lambda", "add_permission", {
                "FunctionName": function, "StatementId": f"invoke-url-{number}", "Action": "lambda:InvokeFunctionUrl",
                "Principal": principal, "FunctionUrlAuthType": "AWS_IAM"}),
            ("lambda", "add_permission", {
                "FunctionName": function, "StatementId": f"invoke-via-url-{number}", "Action": "lambda:InvokeFunction",
                "Principal": principal, "InvokedViaFunctionUrl": True})]


def exists(read) -> bool:
    try:
        read()
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ResourceNotFoundException", "NoSuchEntity"):
            return False
        raise


def deploy(args, clients, prices) -> list[Call]:
    check_settings(args)
    name, lambda_ = args.function_name, clients["lambda"]
    if exists(lambda: lambda_.get_function(FunctionName=name)):
        raise LaunchError(f"function {name} already exists: `byoc-cloud lambda update --function-name {name}` changes it")
    endpoint_arn, kind = endpoint_facts(clients["sagemaker"], args.endpoint)
    print(f"endpoint {args.endpoint} is {kind}: images up to {contract.MAX_INVOKE_BYTES[kind]} bytes")
    account = endpoint_arn.split(":")[4]
    package = lambda_package.build()
    group_exists = any(g["logGroupName"] == log_group(name) for g in clients["logs"].describe_log_groups(
        logGroupNamePrefix=log_group(name))["logGroups"])
    calls = [] if group_exists else [("logs", "create_log_group", {"logGroupName": log_group(name), "tags": TAGS})]
    calls += [("logs", "put_retention_policy", {"logGroupName": log_group(name),
                                                "retentionInDays": args.log_retention_days})]
    calls += access_calls(args, endpoint_arn, exists(lambda: clients["iam"].get_role(RoleName=role_name(name))))
    calls += [("lambda", "create_function", {
        "FunctionName": name, "Runtime": lambda_package.RUNTIME, "Handler": lambda_package.HANDLER,
        "Role": f"arn:{endpoint_arn.split(':')[1]}:iam::{account}:role/{role_name(name)}",
        "Code": {"ZipFile": package}, "Timeout": args.timeout, "MemorySize": args.memory,
        "Architectures": [args.architecture], "Environment": environment(args, kind),
        "Description": f"classifies images with the SageMaker endpoint {args.endpoint} (byoc)", "Tags": TAGS}),
        ("lambda", "put_function_concurrency", {"FunctionName": name,
                                                "ReservedConcurrentExecutions": args.reserved_concurrency})]
    return calls + url_calls(args) + alarm_calls(args)


def update(args, clients, prices) -> list[Call]:
    """New code (when it differs), limits, environment, policy, alarms, retention and any URL invoker's
    missing grant; what a flag does not give stays as the function has it."""
    check_given(args)
    lambda_, name = clients["lambda"], args.function_name
    if not exists(lambda: lambda_.get_function(FunctionName=name)):
        raise LaunchError(f"function {name} does not exist: `byoc-cloud lambda deploy` creates it")
    current = lambda_.get_function(FunctionName=name)["Configuration"]
    variables = current.get("Environment", {}).get("Variables", {})
    concurrency = lambda_.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions", 0)
    for key, value in {"endpoint": variables.get("ENDPOINT_NAME"), "timeout": current["Timeout"],
                       "memory": current["MemorySize"], "reserved_concurrency": concurrency,
                       "fetch_timeout": float(variables.get("FETCH_TIMEOUT_S", 5)),
                       "invoke_timeout": float(variables.get("INVOKE_TIMEOUT_S", 30))}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.alarm_topic:  # keep where the alarms notify
        alarms = clients["cloudwatch"].describe_alarms(AlarmNames=[f"{name}-{s}" for s in ALARMS])["MetricAlarms"]
        args.alarm_topic = sorted({topic for alarm in alarms for topic in alarm.get("AlarmActions", [])})
    check_settings(args)
    endpoint_arn, kind = endpoint_facts(clients["sagemaker"], args.endpoint)
    package = lambda_package.build()
    calls = []
    if current.get("CodeSha256") != lambda_package.code_sha256(package):
        calls.append(("lambda", "update_function_code", {"FunctionName": name, "ZipFile": package}))
    else:
        print(f"{name}: code up to date")
    calls += [("lambda", "update_function_configuration", {"FunctionName": name, "Timeout": args.timeout,
                                                          "MemorySize": args.memory,
                                                          "Environment": environment(args, kind)}),
              ("lambda", "put_function_concurrency", {"FunctionName": name,
                                                      "ReservedConcurrentExecutions": args.reserved_concurrency})]
    if args.log_retention_days is not None:
        calls.append(("logs", "put_retention_policy", {"logGroupName": log_group(name),
                                                       "retentionInDays": args.log_retention_days}))
    return calls + access_calls(args, endpoint_arn, role_exists=True) + alarm_calls(args) + \
        missing_url_grants(lambda_, name)


def missing_url_grants(lambda_, function: str) -> list[Call]:
    """The lambda:InvokeFunction grant of each URL invoker that an older deploy gave only
    lambda:InvokeFunctionUrl (invoke-url-N without invoke-via-url-N): function URLs created before
    October 2025 kept working without it only until 1 November 2026."""
    try:
        statements = json.loads(lambda_.get_policy(FunctionName=function)["Policy"])["Statement"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":  # no resource policy at all
            return []
        raise
    sids = {statement.get("Sid") for statement in statements}
    calls = []
    for statement in statements:
        number = str(statement.get("Sid", "")).removeprefix("invoke-url-")
        if statement.get("Sid") == f"invoke-url-{number}" and f"invoke-via-url-{number}" not in sids:
            principal = statement["Principal"]  # AWS writes {"AWS": "arn:aws:iam::ACCOUNT:root"}
            calls += url_grant_calls(function, principal.get("AWS") if isinstance(principal, dict) else principal,
                                     int(number))[1:]
    return calls


def delete(args, clients, prices) -> list[Call]:
    """Everything deploy made, as far as it exists (a half-made function can be deleted too)."""
    check_names(args)
    name, lambda_, iam = args.function_name, clients["lambda"], clients["iam"]
    calls = []
    if exists(lambda: lambda_.get_function_url_config(FunctionName=name)):
        calls.append(("lambda", "delete_function_url_config", {"FunctionName": name}))
    if exists(lambda: lambda_.get_function(FunctionName=name)):
        calls.append(("lambda", "delete_function", {"FunctionName": name}))
    role = role_name(name)
    if exists(lambda: iam.get_role(RoleName=role)):
        calls += [("iam", "delete_role_policy", {"RoleName": role, "PolicyName": policy})
                  for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]]
        calls.append(("iam", "delete_role", {"RoleName": role}))
    alarms = [a["AlarmName"] for a in clients["cloudwatch"].describe_alarms(
        AlarmNames=[f"{name}-{suffix}" for suffix in ALARMS])["MetricAlarms"]]
    if alarms:
        calls.append(("cloudwatch", "delete_alarms", {"AlarmNames": alarms}))
    if not args.keep_logs and any(g["logGroupName"] == log_group(name) for g in clients["logs"].describe_log_groups(
            logGroupNamePrefix=log_group(name))["logGroups"]):
        calls.append(("logs", "delete_log_group", {"logGroupName": log_group(name)}))
    if not calls:
        print(f"{name}: nothing to delete")
    return calls


def _settings(command, defaults: bool) -> None:
    value = (lambda v: v) if defaults else (lambda v: None)
    command.add_argument("--timeout", type=int, default=value(40), help="seconds (1-900; default 40)")
    command.add_argument("--memory", type=int, default=value(512), help="MB (128-10240; default 512)")
    command.add_argument("--reserved-concurrency", type=int, default=value(10),
                         help="invocations at a time, kept for this function and never more (default 10)")
    command.add_argument("--fetch-timeout", type=arguments.positive, default=value(5.0), help="seconds for fetching a url (default 5)")
    command.add_argument("--invoke-timeout", type=arguments.positive, default=value(30.0), help="seconds for the endpoint (default 30)")
    command.add_argument("--log-retention-days", type=int, default=value(30), help="default 30")
    command.add_argument("--alarm-topic", action="append", default=[], metavar="SNS_TOPIC_ARN",
                         help="notify this topic when the errors or throttles alarm fires (repeatable)")


def add_commands(sub, common) -> None:
    group = sub.add_parser("lambda", help="the endpoint's Lambda function: deploy, update, delete").add_subparsers(
        dest="lambda_command", required=True)
    command = group.add_parser("deploy", parents=[common], help="create the function, its role, limits, URL, alarms")
    command.add_argument("--endpoint", required=True, type=arguments.ENDPOINT_NAME, help="the SageMaker endpoint it calls")
    command.add_argument("--function-name", help="default: ENDPOINT-classify")
    _settings(command, defaults=True)
    command.add_argument("--architecture", choices=("arm64", "x86_64"), default="arm64")
    command.add_argument("--function-url", action="store_true", help="an HTTPS URL with AWS_IAM auth (SigV4)")
    command.add_argument("--url-invoker", action="append", default=[], metavar="PRINCIPAL",
                         help="another account or role allowed to call the URL (repeatable)")
    command.set_defaults(run=lambda args, clients, prices: deploy(_named(args), clients, prices))

    command = group.add_parser("update", parents=[common], help="new code and settings for a deployed function")
    command.add_argument("--function-name", required=True)
    command.add_argument("--endpoint", type=arguments.ENDPOINT_NAME, help="call another endpoint (default: the current one)")
    _settings(command, defaults=False)
    command.set_defaults(run=update)

    command = group.add_parser("delete", parents=[common], help="the function and everything deploy made for it")
    command.add_argument("--function-name", required=True)
    command.add_argument("--keep-logs", action="store_true", help="keep the function's log group")
    command.set_defaults(run=delete)


def _named(args):
    if args.function_name is None:
        args.function_name = f"{args.endpoint[:55]}-classify"
    return args
