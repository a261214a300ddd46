"""byoc-cloud lambda deploy | update | delete against moto's IAM, Lambda, CloudWatch and Logs.

The function is created, changed and deleted, never invoked (moto would start a container for
that); its code is checked by digest against lambda_package.build(), whose handler the Lambda
tests run (tests/cloud/test_endpoint_lambda.py, tests/containers/test_lambda_endpoint.py).
"""
import json
import uuid

import boto3
import pytest

from byoc import contract
from byoc_cloud import cli, lambda_functions, lambda_package
from cli_requests import IMAGE, ROLE, dry_run

ACCOUNT, REGION = "123456789012", "us-east-1"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:byoc-alarms"


def endpoint(kind: str = "realtime") -> str:
    """A live endpoint in moto: real-time, serverless, asynchronous or multi-model."""
    sagemaker, name = boto3.client("sagemaker"), f"ep-{kind}-{uuid.uuid4().hex[:6]}"
    container = {"Image": IMAGE.format("serving"), "ModelDataUrl": "s3://bucket/model.tar.gz",
                 **({"Mode": "MultiModel", "ModelDataUrl": "s3://bucket/models/"} if kind == "multi-model" else {})}
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    variant = {"VariantName": "AllTraffic", "ModelName": name}
    variant |= ({"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}} if kind == "serverless" else
                {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1})
    extra = {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://bucket/async/"}}} if kind == "async" else {}
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], **extra)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


def deployed(name: str) -> dict:
    """What AWS holds for the function: its configuration, concurrency, URL, role, alarms, logs."""
    lambda_, iam = boto3.client("lambda"), boto3.client("iam")
    function = lambda_.get_function(FunctionName=name)["Configuration"]
    role = function["Role"].rsplit("/", 1)[1]
    url = lambda_.get_function_url_config(FunctionName=name) if lambda_functions.exists(
        lambda: lambda_.get_function_url_config(FunctionName=name)) else None
    return {
        "function": function, "url": url,
        "concurrency": lambda_.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"],
        "trust": iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"],
        "policies": {p: iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
                     for p in iam.list_role_policies(RoleName=role)["PolicyNames"]},
        "attached": iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"],
        "alarms": boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"],
        "logs": [g for g in boto3.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")
                 ["logGroups"] if g["logGroupName"] == f"/aws/lambda/{name}"],
    }


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_deploy_makes_a_least_privilege_function_with_limits_url_alarms_and_logs(aws_env, capsys):
    name = endpoint()
    function_name = f"{name}-classify"
    assert cli.main(["lambda", "deploy", "--endpoint", name, "--function-url", "--reserved-concurrency", "5",
                     "--memory", "256", "--timeout", "45", "--log-retention-days", "14", "--alarm-topic", TOPIC,
                     "--url-invoker", "arn:aws:iam::210987654321:role/web-frontend"]) == 0
    assert f"endpoint {name} is realtime: images up to {contract.MAX_INVOKE_BYTES['realtime']} bytes" in \
        capsys.readouterr().out
    state = deployed(function_name)
    function = state["function"]
    assert (function["Runtime"], function["Handler"], function["Timeout"], function["MemorySize"]) == \
        ("python3.12", "endpoint_lambda.handler", 45, 256)
    assert function["CodeSha256"] == lambda_package.code_sha256(lambda_package.build())
    assert function["Environment"]["Variables"] == {"ENDPOINT_NAME": name, "ENDPOINT_TYPE": "realtime",
                                                    "FETCH_TIMEOUT_S": "5", "INVOKE_TIMEOUT_S": "30"}
    assert state["concurrency"] == 5
    assert state["url"]["AuthType"] == "AWS_IAM"
    policy = json.loads(boto3.client("lambda").get_policy(FunctionName=function_name)["Policy"])
    # Since October 2025 a new function URL takes both actions; InvokeFunction only through the URL.
    # (moto keeps neither the FunctionUrlAuthType nor the InvokedViaFunctionUrl condition, nor the principal's form.)
    grants = {grant["Action"]: grant for grant in policy["Statement"]}
    assert sorted(grants) == ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    assert all("210987654321:role/web-frontend" in json.dumps(grant) for grant in grants.values())

    # the role: Lambda alone may assume it; one inline policy; the endpoint and its own log group only
    assert state["trust"]["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                            "Action": "sts:AssumeRole"}]
    assert state["attached"] == []
    [document] = state["policies"].values()
    endpoint_arn = boto3.client("sagemaker").describe_endpoint(EndpointName=name)["EndpointArn"]
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{function_name}:*"
    grants = {(action, resource) for s in document["Statement"] for action in as_list(s["Action"])
              for resource in as_list(s["Resource"])}
    assert grants == {("sagemaker:InvokeEndpoint", endpoint_arn), ("logs:CreateLogStream", log_group),
                      ("logs:PutLogEvents", log_group)}
    assert all(s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s for s in document["Statement"])
    for action, resource in grants:
        assert "*" not in action
        assert "*" not in resource.removesuffix(f"/aws/lambda/{function_name}:*"), resource  # only the log-group form

    alarms = {a["MetricName"]: a for a in state["alarms"]}
    assert sorted(alarms) == ["Errors", "Throttles"]
    for alarm in alarms.values():
        assert (alarm["Namespace"], alarm["Dimensions"], alarm["AlarmActions"], alarm["Threshold"]) == \
            ("AWS/Lambda", [{"Name": "FunctionName", "Value": function_name}], [TOPIC], 1)
    assert [g["retentionInDays"] for g in state["logs"]] == [14]

    assert cli.main(["lambda", "deploy", "--endpoint", name]) == 2
    assert "already exists: `byoc-cloud lambda update" in capsys.readouterr().err


def test_a_serverless_endpoint_gets_the_4_mb_limit_and_no_url_unless_asked(aws_env, capsys):
    name = endpoint("serverless")
    assert cli.main(["lambda", "deploy", "--endpoint", name, "--function-name", f"{name}-fn"]) == 0
    state = deployed(f"{name}-fn")
    assert state["function"]["Environment"]["Variables"]["ENDPOINT_TYPE"] == "serverless"
    assert state["url"] is None and state["concurrency"] == 10


def test_update_changes_what_it_is_given_and_keeps_the_rest(aws_env, capsys):
    name = endpoint()
    function_name = f"{name}-classify"
    assert cli.main(["lambda", "deploy", "--endpoint", name, "--alarm-topic", TOPIC, "--memory", "256"]) == 0
    other = endpoint("serverless")
    capsys.readouterr()
    assert cli.main(["lambda", "update", "--function-name", function_name, "--reserved-concurrency", "3",
                     "--endpoint", other]) == 0
    assert f"{function_name}: code up to date" in capsys.readouterr().out
    state = deployed(function_name)
    assert (state["concurrency"], state["function"]["MemorySize"], state["function"]["Timeout"]) == (3, 256, 40)
    assert state["function"]["Environment"]["Variables"]["ENDPOINT_NAME"] == other
    assert state["function"]["Environment"]["Variables"]["ENDPOINT_TYPE"] == "serverless"
    [document] = state["policies"].values()
    invoke = next(s for s in document["Statement"] if s["Action"] == "sagemaker:InvokeEndpoint")
    assert invoke["Resource"] == boto3.client("sagemaker").describe_endpoint(EndpointName=other)["EndpointArn"]
    assert {a["AlarmActions"][0] for a in state["alarms"]} == {TOPIC}
    assert [g["retentionInDays"] for g in state["logs"]] == [30]
    assert cli.main(["lambda", "update", "--function-name", "no-such-function"]) == 2


def test_update_gives_an_older_deploys_url_invokers_lambda_invoke_function(aws_env):
    """A deploy from before October 2025's change granted lambda:InvokeFunctionUrl alone."""
    name = endpoint()
    function_name = f"{name}-classify"
    assert cli.main(["lambda", "deploy", "--endpoint", name, "--function-url", "--url-invoker", "210987654321"]) == 0
    lambda_ = boto3.client("lambda")
    lambda_.remove_permission(FunctionName=function_name, StatementId="invoke-via-url-1")  # as an older deploy left it
    assert cli.main(["lambda", "update", "--function-name", function_name]) == 0
    statements = json.loads(lambda_.get_policy(FunctionName=function_name)["Policy"])["Statement"]
    assert sorted((s["Sid"], s["Action"]) for s in statements) == [
        ("invoke-url-1", "lambda:InvokeFunctionUrl"), ("invoke-via-url-1", "lambda:InvokeFunction")]
    assert cli.main(["lambda", "update", "--function-name", function_name]) == 0  # and only once
    assert len(json.loads(lambda_.get_policy(FunctionName=function_name)["Policy"])["Statement"]) == 2


def test_missing_url_grants_reads_the_principal_as_aws_writes_it():
    """GetPolicy as Lambda answers it (moto keeps the principal as given): {"AWS": "arn:...:root"}."""
    from botocore.stub import Stubber

    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    statement = {"Sid": "invoke-url-2", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                 "Action": "lambda:InvokeFunctionUrl", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
                 "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}}
    with Stubber(client) as stub:
        stub.add_response("get_policy", {"Policy": json.dumps({"Version": "2012-10-17", "Id": "default",
                                                               "Statement": [statement]}), "RevisionId": "r1"})
        assert lambda_functions.missing_url_grants(client, "f") == [("lambda", "add_permission", {
            "FunctionName": "f", "StatementId": "invoke-via-url-2", "Action": "lambda:InvokeFunction",
            "Principal": "arn:aws:iam::210987654321:root", "InvokedViaFunctionUrl": True})]
        stub.add_client_error("get_policy", "ResourceNotFoundException", http_status_code=404)
        assert lambda_functions.missing_url_grants(client, "f") == []


def test_delete_removes_everything_deploy_made(aws_env, capsys):
    name = endpoint()
    function_name = f"{name}-classify"
    assert cli.main(["lambda", "deploy", "--endpoint", name, "--function-url"]) == 0
    assert cli.main(["lambda", "delete", "--function-name", function_name]) == 0
    lambda_, iam = boto3.client("lambda"), boto3.client("iam")
    assert not lambda_functions.exists(lambda: lambda_.get_function(FunctionName=function_name))
    assert not lambda_functions.exists(lambda: iam.get_role(RoleName=lambda_functions.role_name(function_name)))
    assert boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{function_name}-")["MetricAlarms"] == []
    assert not boto3.client("logs").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/{function_name}")["logGroups"]
    capsys.readouterr()
    assert cli.main(["lambda", "delete", "--function-name", function_name]) == 0
    assert f"{function_name}: nothing to delete" in capsys.readouterr().out


def test_dry_run_requests_match_the_api_models_and_send_nothing(aws_env, capsys):
    name = endpoint()
    lines, calls = dry_run(capsys, "lambda", "deploy", "--endpoint", name, "--function-url",
                           "--url-invoker", "210987654321")
    assert [(c["client"], c["operation"]) for c in calls] == [
        ("logs", "create_log_group"), ("logs", "put_retention_policy"), ("iam", "create_role"),
        ("iam", "put_role_policy"), ("lambda", "create_function"), ("lambda", "put_function_concurrency"),
        ("lambda", "create_function_url_config"), ("lambda", "add_permission"), ("lambda", "add_permission"),
        ("cloudwatch", "put_metric_alarm"), ("cloudwatch", "put_metric_alarm")]
    assert calls[7]["request"] == {"FunctionName": f"{name}-classify", "StatementId": "invoke-url-1",
                                   "Action": "lambda:InvokeFunctionUrl", "Principal": "210987654321",
                                   "FunctionUrlAuthType": "AWS_IAM"}
    assert calls[8]["request"] == {"FunctionName": f"{name}-classify", "StatementId": "invoke-via-url-1",
                                   "Action": "lambda:InvokeFunction", "Principal": "210987654321",
                                   "InvokedViaFunctionUrl": True}
    code = calls[4]["request"]["Code"]["ZipFile"]
    assert code.startswith(f"<{len(lambda_package.build())} bytes, sha256 ")
    assert not lambda_functions.exists(lambda: boto3.client("lambda").get_function(FunctionName=f"{name}-classify"))


@pytest.mark.parametrize("kind, extra, message", [
    ("realtime", ["--timeout", "901"], "Lambda allows 1 to 900 s"),
    ("realtime", ["--timeout", "20"], "leaves no time to answer"),
    ("realtime", ["--memory", "64"], "Lambda allows 128 to 10240 MB"),
    ("realtime", ["--reserved-concurrency", "-1"], "must be 0"),
    ("realtime", ["--log-retention-days", "31"], "keeps logs for one of 1, 3, 5, 7, 14, 30"),
    ("realtime", ["--function-name", "has space"], "1 to 64 letters, digits, hyphens or underscores"),
    ("realtime", ["--alarm-topic", "not-an-arn"], "is not an SNS topic ARN"),
    ("async", [], "is asynchronous"),
    ("multi-model", [], "multi-model endpoint"),
])
def test_refusals_before_any_change(aws_env, capsys, kind, extra, message):
    name = endpoint(kind)
    assert cli.main(["lambda", "deploy", "--endpoint", name, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not lambda_functions.exists(lambda: boto3.client("iam").get_role(
        RoleName=lambda_functions.role_name(f"{name}-classify")))


def test_a_missing_endpoint_is_named(aws_env, capsys):
    assert cli.main(["lambda", "deploy", "--endpoint", "no-such-endpoint"]) == 1
    assert "no-such-endpoint" in capsys.readouterr().err
