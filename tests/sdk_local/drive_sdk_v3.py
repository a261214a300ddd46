"""SageMaker Python SDK v3 local mode with our images, as a user runs it.

Run by test_sdk_v3_local.py with the SDK v3 interpreter (.venv-sdk-v3): trains with
ModelTrainer(training_mode=Mode.LOCAL_CONTAINER) on local folders (v3 passes the image no
command, so the image's default must train), then serves the model with the serving image
through the local session's clients (create_model, create_endpoint_config, create_endpoint,
invoke_endpoint) and deletes the endpoint. Writes a JSON summary to --result.
"""
import argparse
import importlib.metadata
import json
from pathlib import Path

from sagemaker.core.local import LocalSession
from sagemaker.core.training.configs import Compute, InputData
from sagemaker.train.model_trainer import Mode, ModelTrainer

ROLE = "arn:aws:iam::111111111111:role/service-role/SageMakerRole"  # never checked in local mode


def main() -> None:
    args = parse_args()
    session = LocalSession()
    # The local-mode settings a user keeps in ~/.sagemaker/config.yaml, set in code.
    session.config = {"local": {"local_code": True, "serving_port": args.port,
                                "container_root": str(args.container_root)}}

    trainer = ModelTrainer(
        training_image=args.training_image, training_mode=Mode.LOCAL_CONTAINER, sagemaker_session=session,
        role=ROLE, base_job_name=args.job_name, local_container_root=str(args.container_root),
        compute=Compute(instance_type="local", instance_count=args.instance_count),
        hyperparameters=json.loads(args.hyperparameters),
    )
    trainer.train(input_data_config=[InputData(channel_name=name, data_source=str(args.data / name))
                                     for name in ("train", "valid", "test")])
    model_data = args.container_root / "compressed_artifacts" / "model.tar.gz"
    result = {"sdk_version": importlib.metadata.version("sagemaker"), "model_data": f"file://{model_data}"}

    if args.predict:
        client, runtime = session.sagemaker_client, session.sagemaker_runtime_client
        name = f"{args.job_name}-endpoint"
        client.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": args.serving_image, "ModelDataUrl": f"file://{model_data}", "Environment": {}})
        client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "local"}])
        try:
            client.create_endpoint(EndpointName=name, EndpointConfigName=name)
            result["endpoint_name"] = name
            result["endpoint_status"] = client.describe_endpoint(EndpointName=name)["EndpointStatus"]
            result["predictions"] = {}
            for path in args.predict:
                response = runtime.invoke_endpoint(EndpointName=name, Body=path.read_bytes(),
                                                   ContentType="image/png", Accept="application/json")
                result["predictions"][str(path)] = json.loads(response["Body"].read())
        finally:
            client.delete_endpoint(EndpointName=name)
            client.delete_endpoint_config(EndpointConfigName=name)
            client.delete_model(ModelName=name)
    args.result.write_text(json.dumps(result, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--training-image", required=True)
    parser.add_argument("--serving-image", required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with train/, valid/ and test/")
    parser.add_argument("--container-root", type=Path, required=True,
                        help="the SDK's working folder; the model lands in compressed_artifacts/")
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--hyperparameters", default="{}", help="JSON object")
    parser.add_argument("--port", type=int, default=8080, help="the local endpoint's host port")
    parser.add_argument("--predict", type=Path, nargs="*", default=[], help="images to send to the endpoint")
    parser.add_argument("--result", type=Path, required=True)
    return parser.parse_args()


if __name__ == "__main__":
    main()
