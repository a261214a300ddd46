"""SageMaker Python SDK v2 local mode's batch transform with the serving image, as a user runs it.

Run by test_sdk_v2_transform.py with the SDK v2 interpreter (.venv-sdk-v2): a Model from the
serving image and a file:// model.tar.gz, then for each job in --jobs (JSON: name, input folder,
output folder, content type, split type, strategy, assemble_with) Transformer(instance_type=
"local").transform(...) and its wait. Local mode starts the serving container per job, asks it for
GET /execution-parameters, sends each record to /invocations and writes <file>.out per input file.
Writes a JSON summary to --result.
"""
import argparse
import json
from pathlib import Path

import sagemaker
from sagemaker.local import LocalSession
from sagemaker.model import Model

ROLE = "arn:aws:iam::111111111111:role/service-role/SageMakerRole"  # never checked in local mode


def main() -> None:
    args = parse_args()
    session = LocalSession()
    session.config = {"local": {"local_code": True, "serving_port": args.port,
                                "container_root": str(args.container_root)}}
    model = Model(image_uri=args.serving_image, model_data=f"file://{args.model_data}", role=ROLE,
                  sagemaker_session=session)
    jobs = {}
    for job in json.loads(args.jobs):
        transformer = model.transformer(instance_count=1, instance_type="local", strategy=job["strategy"],
                                        assemble_with=job.get("assemble_with"), accept="application/json",
                                        output_path=f"file://{job['output']}")
        transformer.transform(f"file://{job['input']}", content_type=job["content_type"],
                              split_type=job["split_type"], job_name=job["name"], wait=True, logs=False)
        description = transformer.sagemaker_session.sagemaker_client.describe_transform_job(job["name"])
        jobs[job["name"]] = {"status": description["TransformJobStatus"],
                             "batch_strategy": description["BatchStrategy"]}
    args.result.write_text(json.dumps({"sdk_version": sagemaker.__version__, "jobs": jobs}, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serving-image", required=True)
    parser.add_argument("--model-data", type=Path, required=True, help="a model.tar.gz")
    parser.add_argument("--container-root", type=Path, required=True, help="the SDK's working folders")
    parser.add_argument("--port", type=int, default=8080, help="the serving container's host port")
    parser.add_argument("--jobs", required=True, help="JSON list of transform jobs")
    parser.add_argument("--result", type=Path, required=True)
    return parser.parse_args()


if __name__ == "__main__":
    main()
