"""byoc-cloud train: the training Environment from --env (checked against the training image's
settings) and network isolation, on by default: a job reads its channels from files SageMaker
downloads and its peers are still reachable."""
import boto3

from byoc_cloud import cli
from cli_requests import dry_run

ROLE = "arn:aws:iam::123456789012:role/byoc-sagemaker"


def train(images: dict, *extra: str) -> list[str]:
    return ["train", "--image", images["training"], "--role", ROLE, "--channel", "train=s3://bucket/fm/train",
            "--output", "s3://bucket/out", "--instance-type", "ml.m5.xlarge", *extra]


def test_settings_and_isolation_reach_the_training_job(launch_env, capsys):
    _, [request] = dry_run(capsys, *train(launch_env, "--env", "OMP_NUM_THREADS=2", "--env", "NCCL_DEBUG=INFO"))
    assert request["request"]["Environment"] == {"OMP_NUM_THREADS": "2", "NCCL_DEBUG": "INFO"}
    assert request["request"]["EnableNetworkIsolation"] is True
    assert cli.main([*train(launch_env, "--no-network-isolation"), "--job-name", "byoc-train-settings"]) == 0
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="byoc-train-settings")
    assert job["EnableNetworkIsolation"] is False  # moto keeps this; it does not echo Environment


def test_a_serving_setting_on_a_training_job_is_refused(launch_env, capsys):
    assert cli.main([*train(launch_env, "--env", "BYOC_MAX_BATCH_SIZE=4"), "--job-name", "byoc-train-refused"]) == 2
    assert "the training image reads no such setting" in capsys.readouterr().err
    names = [s["TrainingJobName"] for s in boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]]
    assert "byoc-train-refused" not in names


def test_a_file_name_hyperparameter_reaches_the_job_as_typed(launch_env, capsys):
    """--hp pretrained_weights=1e5 was sent as "100000.0": the CLI read every value as JSON."""
    import json

    from byoc.training import hyperparameters

    _, [request] = dry_run(capsys, *train(launch_env, "--hp", "model=resnet50", "--hp", "pretrained_weights=1e5",
                                          "--hp", "epochs=2"))
    sent = request["request"]["HyperParameters"]
    assert sent["epochs"] == "2"
    decoded = {name: json.loads(text) for name, text in sent.items()}  # as sagemaker-training decodes them
    assert hyperparameters.parse(decoded, sent).pretrained_weights == "1e5"
