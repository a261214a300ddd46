"""SageMaker Python SDK v2 local mode with our images, as a user runs it.

Run by test_sdk_v2_local.py with the SDK v2 interpreter (.venv-sdk-v2): trains with
Estimator(instance_type="local") on file:// channels, optionally deploys the model with
the serving image on a local endpoint, predicts on real images and deletes the endpoint.
Prints nothing the tests read; writes a JSON summary to --result.
"""
import argparse
import json
from pathlib import Path

import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.estimator import Estimator
from sagemaker.local import LocalSession
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer, NumpySerializer

ROLE = "arn:aws:iam::111111111111:role/service-role/SageMakerRole"  # never checked in local mode


def main() -> None:
    args = parse_args()
    session = LocalSession()
    # The local-mode settings a user keeps in ~/.sagemaker/config.yaml, set in code.
    session.config = {"local": {"local_code": True, "serving_port": args.port,
                                "container_root": str(args.container_root)}}

    estimator = Estimator(
        image_uri=args.training_image, role=ROLE, instance_type="local",
        instance_count=args.instance_count, output_path=f"file://{args.output}",
        hyperparameters=json.loads(args.hyperparameters), sagemaker_session=session,
    )
    estimator.fit({name: f"file://{args.data / name}" for name in ("train", "valid", "test")},
                  job_name=args.job_name)
    result = {"sdk_version": sagemaker.__version__, "job_name": estimator.latest_training_job.name,
              "model_data": estimator.model_data}

    if args.predict:
        predictor = estimator.deploy(
            initial_instance_count=1, instance_type="local", image_uri=args.serving_image,
            endpoint_name=f"{args.job_name}-endpoint",
            serializer=IdentitySerializer(content_type="image/png"), deserializer=JSONDeserializer(),
        )
        try:
            result["endpoint_name"] = predictor.endpoint_name
            result["predictions"] = {str(path): predictor.predict(path.read_bytes()) for path in args.predict}
            # As the SDK sends by default: Predictor's IdentitySerializer labels the bytes
            # application/octet-stream, its BytesDeserializer asks for */*. NumpySerializer writes
            # np.array(data): float64 for the nested lists of a preprocessed image.
            plain = Predictor(predictor.endpoint_name, sagemaker_session=session)
            result["default_predictions"] = {str(path): json.loads(plain.predict(path.read_bytes()))
                                             for path in args.predict}
            arrays = Predictor(predictor.endpoint_name, sagemaker_session=session, serializer=NumpySerializer(),
                               deserializer=JSONDeserializer())
            result["npy_predictions"] = {str(path): arrays.predict(json.loads(path.read_text()))
                                         for path in args.predict_lists}
        finally:
            predictor.delete_endpoint()
    args.result.write_text(json.dumps(result, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--training-image", required=True)
    parser.add_argument("--serving-image", required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with train/, valid/ and test/")
    parser.add_argument("--output", type=Path, required=True, help="the job's output_path (file://)")
    parser.add_argument("--container-root", type=Path, required=True, help="the SDK's working folders")
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--hyperparameters", default="{}", help="JSON object")
    parser.add_argument("--port", type=int, default=8080, help="the local endpoint's host port")
    parser.add_argument("--predict", type=Path, nargs="*", default=[], help="images to send to the endpoint")
    parser.add_argument("--predict-lists", type=Path, nargs="*", default=[],
                        help="JSON files of preprocessed images as nested lists, sent with NumpySerializer")
    parser.add_argument("--result", type=Path, required=True)
    return parser.parse_args()


if __name__ == "__main__":
    main()
