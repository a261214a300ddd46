"""byoc-cloud transform: a model and a batch transform job, against moto's server (which stores and
echoes the whole job, TransformAmiVersion included), each printed request held to botocore's model
of the API and, before it is printed, to its enums, maximums and patterns (byoc_cloud.model_check)."""
import boto3
import pytest

from byoc_cloud import cli
from cli_requests import dry_run

ROLE = "arn:aws:iam::123456789012:role/byoc-sagemaker"
MODEL = "s3://bucket/jobs/fashion-1/output/model.tar.gz"


def transform(images: dict, *extra: str, image: str = "serving") -> list[str]:
    return ["transform", "--image", images[image], "--role", ROLE, "--model-data", MODEL,
            "--input", "s3://bucket/to-score/", "--output", "s3://bucket/scored/", *extra]


def test_an_image_folder_is_scored_on_a_gpu_with_the_ami_it_needs(launch_env, capsys):
    assert cli.main([*transform(launch_env, "--instance-type", "ml.g4dn.xlarge", "--instance-count", "2",
                                "--job-name", "byoc-transform-gpu", "--env", "BYOC_MAX_BATCH_SIZE=16")]) == 0
    out = capsys.readouterr().out
    assert "TransformAmiVersion: al2-ami-sagemaker-batch-gpu-535" in out
    assert ("BatchStrategy, MaxPayloadInMB, MaxConcurrentTransforms: not set, so SageMaker asks the container "
            "(GET /execution-parameters: MultiRecord") in out
    assert ("estimated cost: 2 x ml.g4dn.xlarge at 0.736 USD/h (us-east-1): 1.47 USD per hour the job runs") in out
    sagemaker = boto3.client("sagemaker")
    job = sagemaker.describe_transform_job(TransformJobName="byoc-transform-gpu")
    assert job["TransformResources"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 2,
                                         "TransformAmiVersion": "al2-ami-sagemaker-batch-gpu-535"}
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/to-score/"}},
        "ContentType": "application/x-image", "SplitType": "None", "CompressionType": "None"}
    assert job["TransformOutput"] == {"S3OutputPath": "s3://bucket/scored/", "Accept": "application/json",
                                      "AssembleWith": "None"}
    assert job["Environment"] == {"BYOC_MAX_BATCH_SIZE": "16"}
    model = sagemaker.describe_model(ModelName=job["ModelName"])
    assert model["PrimaryContainer"] == {"Image": launch_env["serving"], "ModelDataUrl": MODEL}


def test_the_container_decides_what_is_not_given(launch_env, capsys):
    _, requests = dry_run(capsys, *transform(launch_env))
    model, job = (r["request"] for r in requests)
    assert model["EnableNetworkIsolation"] is True  # the model is read from /opt/ml/model: no network needed
    for field in ("BatchStrategy", "MaxPayloadInMB", "MaxConcurrentTransforms", "Environment"):
        assert field not in job
    assert "TransformAmiVersion" not in job["TransformResources"]  # a CPU instance
    assert job["ModelName"] == model["ModelName"] == job["TransformJobName"]


def test_json_lines_are_answered_line_by_line(launch_env, capsys):
    _, requests = dry_run(capsys, *transform(launch_env, "--split", "Line", "--batch-strategy", "MultiRecord",
                                             "--max-payload-mb", "20", "--max-concurrent-transforms", "5"))
    job = requests[1]["request"]
    assert (job["TransformInput"]["SplitType"], job["TransformInput"]["ContentType"]) == ("Line", "application/json")
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert (job["BatchStrategy"], job["MaxPayloadInMB"], job["MaxConcurrentTransforms"]) == ("MultiRecord", 20, 5)


def test_the_model_of_a_training_job(launch_env, capsys):
    assert cli.main(["train", "--image", launch_env["training"], "--role", ROLE, "--channel", "train=s3://bucket/t",
                     "--output", "s3://bucket/jobs", "--instance-type", "ml.m5.xlarge",
                     "--job-name", "byoc-transform-source"]) == 0
    capsys.readouterr()
    argv = transform(launch_env)
    argv[argv.index("--model-data"):argv.index("--model-data") + 2] = ["--training-job", "byoc-transform-source"]
    _, requests = dry_run(capsys, *argv)
    artifacts = boto3.client("sagemaker").describe_training_job(
        TrainingJobName="byoc-transform-source")["ModelArtifacts"]["S3ModelArtifacts"]
    assert requests[0]["request"]["PrimaryContainer"]["ModelDataUrl"] == artifacts


@pytest.mark.parametrize("extra, says", [
    (("--max-payload-mb", "0"), "--max-payload-mb 0: 1 to 100"),
    (("--max-payload-mb", "101"), "--max-payload-mb 101: 1 to 100"),
    (("--max-concurrent-transforms", "0"), "--max-concurrent-transforms 0: 1 to 100"),
    (("--max-concurrent-transforms", "8", "--max-payload-mb", "16"), "= 128 MB; SageMaker allows at most 100 MB"),
    (("--split", "Line", "--content-type", "application/x-npy"), "the serving image takes application/json, application/jsonlines here"),
    (("--content-type", "text/csv"), "the serving image takes image/jpeg, image/png"),
    (("--input", "/data/images"), "--input '/data/images': expected s3://bucket/prefix"),
    (("--instance-count", "0"), "--instance-count 0: at least 1"),
    (("--instance-type", "ml.x9.huge"), "argument --instance-type: 'ml.x9.huge' is not a SageMaker instance type; "
                                        "batch transform jobs take ml.c4, "),
    (("--env", "SAGEMAKER_MAX_PAYLOAD_IN_MB=20"), "(byoc-cloud transform --max-payload-mb)"),
    (("--env", "SAGEMAKER_BATCH_STRATEGY=MULTI_RECORD"), "(byoc-cloud transform --batch-strategy)"),
    (("--env", "BYOC_MAX_PAYLOAD_MB=200"), "SageMaker sends batch requests of at most 104,857,600 bytes"),
    (("--env", "BYOC_MAX_BATCH=4"), "reads no such setting. Did you mean BYOC_MAX_BATCH_SIZE?"),
])
def test_bad_transforms_are_refused_before_any_call(launch_env, capsys, extra, says):
    assert cli.main([*transform(launch_env, *extra), "--job-name", "byoc-transform-refused"]) == 2
    assert says in capsys.readouterr().err
    names = [j["TransformJobName"] for j in boto3.client("sagemaker").list_transform_jobs()["TransformJobSummaries"]]
    assert "byoc-transform-refused" not in names


def test_an_image_no_batch_ami_can_run_is_refused(launch_env, capsys):
    """A CUDA 13 build needs R580; batch transform's newest AMI brings 535."""
    assert cli.main([*transform(launch_env, "--instance-type", "ml.g5.xlarge", image="cuda13")]) == 2
    assert "no TransformAmiVersion brings R580" in capsys.readouterr().out


@pytest.mark.parametrize("content_type", ["image/jpg", "IMAGE/PNG", "image/x-png"])
def test_image_types_under_the_names_users_write_are_taken_as_the_container_takes_them(launch_env, capsys,
                                                                                       content_type):
    _, requests = dry_run(capsys, *transform(launch_env, "--content-type", content_type))
    assert requests[-1]["request"]["TransformInput"]["ContentType"] == content_type
