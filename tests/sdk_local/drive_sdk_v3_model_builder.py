"""SageMaker Python SDK v3's ModelBuilder with our serving image, as a user writes it.

Run by test_sdk_v3_model_builder.py with the SDK v3 interpreter (.venv-sdk-v3):

  local      ModelBuilder(mode=Mode.LOCAL_CONTAINER).build() and deploy() with the model package
             unpacked into <model-path>/code, invoke() with each --predict image, then the
             container is stopped.
  endpoint   ModelBuilder(mode=Mode.SAGEMAKER_ENDPOINT).build(): the CreateModel request it sends,
             caught on the boto3 session before it is signed (no credentials, no network) and
             answered there; every other AWS call is refused and listed.

Writes a JSON summary to --result.
"""
import argparse
import importlib.metadata
import json
import mimetypes
import os
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse
from botocore.validate import validate_parameters
from sagemaker.core.helper.session_helper import Session
from sagemaker.serve import ModelBuilder, ModelServer
from sagemaker.serve.builder.schema_builder import SchemaBuilder
from sagemaker.serve.mode.function_pointers import Mode

ROLE = "arn:aws:iam::111111111111:role/service-role/SageMakerRole"
# What the endpoint answers, as SchemaBuilder wants a sample of it: JSON, so JSON is asked for.
SAMPLE_OUTPUT = {"predictions": [{"label": "Pullover", "probability": 0.9}]}


def main() -> None:
    args = parse_args()
    result = {"sdk_version": importlib.metadata.version("sagemaker")}
    if args.mode == "local":
        result.update(deploy_locally(args))
    else:
        result.update(create_model_request(args))
    args.result.write_text(json.dumps(result, indent=2))


def deploy_locally(args) -> dict:
    # build() checks the role with IAM in local mode too (model_builder.py, _create_model): no account here.
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    # deploy() also registers the endpoint with a LocalSession of its own, which starts a second container
    # through docker compose; that session reads ~/.sagemaker/config.yaml, so its files go where asked.
    config = Path.home() / ".sagemaker" / "config.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(f"local:\n  container_root: {args.container_root}\n")
    sample = args.predict[0].read_bytes()
    builder = ModelBuilder(
        image_uri=args.image, model_server=ModelServer.MMS, mode=Mode.LOCAL_CONTAINER, role_arn=ROLE,
        # The SDK mounts <model_path>/code at /opt/ml/model; naming the folder as the model data
        # also spares build() its S3 default bucket (an STS call).
        model_path=str(args.model_path), s3_model_data_url=f"file://{args.model_path}",
        # deploy() pings the container by invoking it with sample_input: raw image bytes.
        schema_builder=SchemaBuilder(sample_input=sample, sample_output=SAMPLE_OUTPUT),
    )
    builder.build()
    endpoint = builder.deploy(endpoint_name=args.endpoint_name)
    answers = {"endpoint_status": endpoint.endpoint_status, "predictions": {}}
    try:
        for path in args.predict:
            reply = endpoint.invoke(body=path.read_bytes(), content_type=mimetypes.guess_type(path)[0])
            # MMS answers come back as a one-item list (local_resources.py, LocalEndpoint.invoke).
            [answers["predictions"][str(path)]] = json.loads(reply.body.read())
    finally:
        endpoint.delete()
        builder.modes[str(Mode.LOCAL_CONTAINER)].destroy_server()  # delete() leaves the container
    return answers


def create_model_request(args) -> dict:
    boto_session = boto3.Session(region_name="us-east-1")
    sent, refused = [], []

    def answer(model, params, **_):
        """Stands in for SageMaker: CreateModel and the DescribeModel that build() follows it with."""
        if model.name == "CreateModel":
            validate_parameters(params, model.input_shape)  # botocore checked it too, before this event
            sent.append(params)
            return _ok({"ModelArn": f"arn:aws:sagemaker:us-east-1:111111111111:model/{params['ModelName']}"})
        if model.name == "DescribeModel" and sent:
            created = sent[-1]
            return _ok({"ModelName": created["ModelName"], "PrimaryContainer": created["PrimaryContainer"],
                        "ExecutionRoleArn": created["ExecutionRoleArn"], "CreationTime": "2026-01-01T00:00:00Z",
                        "ModelArn": f"arn:aws:sagemaker:us-east-1:111111111111:model/{created['ModelName']}"})
        refused.append(f"{model.service_model.service_name}.{model.name}")
        return _ok({}, status=403)

    # Registered before any client exists, so every client built from this session has it.
    boto_session.events.register("provide-client-params.*.*", _keep_params)
    boto_session.events.register("before-call.*.*", lambda model, context, **kw: answer(model, context["api_params"]))
    builder = ModelBuilder(
        image_uri=args.image, model_server=ModelServer.MMS, mode=Mode.SAGEMAKER_ENDPOINT, role_arn=ROLE,
        s3_model_data_url=args.model_data, instance_type=args.instance_type, env_vars=json.loads(args.env),
        schema_builder=SchemaBuilder(sample_input=b"\x89PNG", sample_output=SAMPLE_OUTPUT),
        sagemaker_session=Session(boto_session=boto_session),
    )
    error = None
    try:
        builder.build(model_name=args.endpoint_name)
    except Exception as exc:  # reported, not raised: the test says what went wrong
        error = f"{type(exc).__name__}: {exc}"
    return {"create_model": sent, "refused_calls": refused, "build_error": error}


def _keep_params(params, context, **_):
    context["api_params"] = dict(params)


def _ok(body: dict, status: int = 200):
    """A parsed answer as botocore's Stubber gives one; 403 is an AccessDenied ClientError."""
    if status != 200:
        body = {"Error": {"Code": "AccessDenied", "Message": "not answered in this test"}}
    return AWSResponse(None, status, {}, None), {**body, "ResponseMetadata": {"HTTPStatusCode": status}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("local", "endpoint"))
    parser.add_argument("--serving-image", required=True, help="the image's local name (ModelBuilder gets --image)")
    parser.add_argument("--image", required=True, help="the image URI ModelBuilder gets (one it can pull)")
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--model-path", type=Path, help="local: a folder whose code/ holds the model package")
    parser.add_argument("--container-root", type=Path, help="local: the local session's working folder")
    parser.add_argument("--predict", type=Path, nargs="*", default=[], help="local: images to send (.png, .jpg)")
    parser.add_argument("--model-data", help="endpoint: the model.tar.gz in S3")
    parser.add_argument("--instance-type", default="ml.m5.large", help="endpoint: its instance type")
    parser.add_argument("--env", default="{}", help="endpoint: env_vars, a JSON object")
    parser.add_argument("--result", type=Path, required=True)
    return parser.parse_args()


if __name__ == "__main__":
    main()
