"""byoc-cloud tune: tuning job requests checked against botocore's model of the SageMaker API (and
the CLI's own enum, maximum and pattern checks), sent to moto, and the best trial handed to deploy.

moto accepts CreateHyperParameterTuningJob and echoes it on describe, but completes it at once
with a canned best trial ("FakeTrainingJobName"); the --best and --wait tests point the tuning
job's backend object at a real trial (the in-process moto, conftest.live_aws).
"""
import datetime as dt
import json
import threading
import time

import boto3
import pytest

from byoc.training.metrics import METRIC_DEFINITIONS
from byoc_cloud import cli
from cli_requests import IMAGE, ROLE, dry_run, ecr_image

TUNE = ["tune", "--image", IMAGE.format("training"), "--role", ROLE, "--channel", "train=s3://bucket/fm/train",
        "--channel", "valid=s3://bucket/fm/valid", "--output", "s3://bucket/out", "--hp", "epochs=8",
        "--hp", "model=resnet_small", "--instance-type", "ml.g4dn.xlarge", "--max-run-hours", "1",
        "--skip-check"]  # a stand-in image URI: the image check has its own tests (test_preflight.py)


def tuning_jobs() -> list[str]:
    summaries = boto3.client("sagemaker").list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    return [s["HyperParameterTuningJobName"] for s in summaries]


def test_dry_run_prints_the_request_and_the_worst_case_cost(aws_env, capsys):
    lines, [call] = dry_run(capsys, *TUNE, "--range", "lr=0.001:0.1:log", "--range", "hflip=True,FALSE",
                            "--range", "batch_size=32:256", "--range", "optimizer=sgd,adamw", "--max-jobs", "12",
                            "--max-parallel-jobs", "3", "--spot", "--checkpoint-s3-uri", "s3://bucket/ckpt/",
                            "--job-name", "fashion-hpo")
    assert lines == ["check skipped (--skip-check)",
                     "estimated cost: at most 12 trials (3 at a time) of 1 x ml.g4dn.xlarge at 0.736 USD/h on-demand "
                     "(us-east-1); at most 8.83 USD on-demand if every trial runs its full 1 h limit (about 4 h end "
                     "to end), about 2.65 USD on spot (assuming 70% off)"]
    assert call["operation"] == "create_hyper_parameter_tuning_job"
    request = call["request"]
    config, definition = request["HyperParameterTuningJobConfig"], request["TrainingJobDefinition"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 3}
    assert config["ParameterRanges"] == {
        "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1",
                                       "ScalingType": "Logarithmic"}],
        "IntegerParameterRanges": [{"Name": "batch_size", "MinValue": "32", "MaxValue": "256", "ScalingType": "Auto"}],
        # booleans as the image reads them, whatever the spelling given
        "CategoricalParameterRanges": [{"Name": "hflip", "Values": ["true", "false"]},
                                       {"Name": "optimizer", "Values": ["sgd", "adamw"]}],
    }
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert definition["StaticHyperParameters"] == {"epochs": "8", "model": '"resnet_small"'}
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    # one prefix per tuning job, ending in / (an S3 prefix without it also matches fashion-hpo-2/...)
    assert definition["CheckpointConfig"] == {"S3Uri": "s3://bucket/ckpt/fashion-hpo/",
                                              "LocalPath": "/opt/ml/checkpoints"}
    assert "fashion-hpo" not in tuning_jobs()


def test_tune_starts_a_tuning_job_in_moto(aws_env, capsys):
    argv = [*TUNE, "--range", "lr=0.01:0.2", "--range", "amp=true,false", "--job-name", "byoc-hpo-moto"]
    assert cli.main(argv) == 0
    job = boto3.client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="byoc-hpo-moto")
    assert job["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert job["HyperParameterTuningJobConfig"]["ParameterRanges"]["CategoricalParameterRanges"] == [
        {"Name": "amp", "Values": ["true", "false"]}]
    assert cli.main(argv) == 1  # the name is taken: SageMaker's own refusal, reported
    assert "already exists" in capsys.readouterr().err


def test_ranges_from_json_and_yaml_files_equal_the_flags(aws_env, capsys, tmp_path):
    spec = {"lr": {"min": 0.001, "max": 0.1, "scaling": "log"}, "hflip": [True, False], "optimizer": ["sgd", "adamw"],
            "momentum": {"min": 0.8, "max": 0.99, "scaling": "reverse-log"}}
    (tmp_path / "ranges.json").write_text(json.dumps(spec))
    (tmp_path / "ranges.yaml").write_text("lr: {min: 0.001, max: 0.1, scaling: log}\nhflip: [true, false]\n"
                                          "optimizer: [sgd, adamw]\nmomentum: {min: 0.8, max: 0.99, scaling: reverse-log}\n")
    flags = ["--range", "lr=0.001:0.1:log", "--range", "hflip=true,false", "--range", "optimizer=sgd,adamw",
             "--range", "momentum=0.8:0.99:reverse-log"]
    ranges = [dry_run(capsys, *TUNE, *extra, "--job-name", "f")[1][0]["request"]["HyperParameterTuningJobConfig"]
              ["ParameterRanges"] for extra in (flags, ["--ranges-file", str(tmp_path / "ranges.json")],
                                               ["--ranges-file", str(tmp_path / "ranges.yaml")])]
    assert ranges[0] == ranges[1] == ranges[2]
    assert ranges[0]["ContinuousParameterRanges"][1]["ScalingType"] == "ReverseLogarithmic"


def test_strategies(aws_env, capsys):
    config = lambda *extra: dry_run(capsys, *TUNE, *extra)[1][0]["request"]["HyperParameterTuningJobConfig"]
    grid = config("--strategy", "grid", "--range", "optimizer=sgd,adamw", "--range", "lr=0.01,0.05,0.1")
    assert (grid["Strategy"], grid["ResourceLimits"]["MaxNumberOfTrainingJobs"]) == ("Grid", 6)  # every combination
    hyperband = config("--strategy", "Hyperband", "--range", "lr=0.01:0.1", "--hyperband-min-epochs", "2")
    assert hyperband["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 2, "MaxResource": 8}}
    assert hyperband["TrainingJobEarlyStoppingType"] == "Off"
    random = config("--strategy", "random", "--range", "lr=0.01:0.1", "--early-stopping", "--random-seed", "7")
    assert (random["Strategy"], random["TrainingJobEarlyStoppingType"], random["RandomSeed"]) == ("Random", "Auto", 7)
    loss = config("--range", "lr=0.01:0.1", "--objective", "validation:loss")
    assert loss["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "validation:loss"}


def test_warm_start(aws_env, capsys):
    [call] = dry_run(capsys, *TUNE, "--range", "lr=0.01:0.1", "--warm-start-from", "hpo-a", "--warm-start-from",
                     "hpo-b", "--warm-start-type", "transfer")[1]
    assert call["request"]["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "hpo-a"},
                                           {"HyperParameterTuningJobName": "hpo-b"}],
        "WarmStartType": "TransferLearning"}


@pytest.mark.parametrize("extra, message", [
    (["--job-name", "a" * 33], "at most 32"),
    (["--job-name", "hpo_1"], "does not match the pattern"),  # the API's pattern: letters, digits, hyphens
    (["--range", "learning_rate=0.1:1"], "not a hyperparameter of the training image"),
    (["--range", "momentum=0.5:1.2"], "outside what the image accepts: a number in [0, 1)"),
    (["--range", "weight_decay=0:0.01:log"], "log scaling needs a low end above 0"),
    (["--range", "epochs=2:9:reverse-log"], "reverse-log scaling is for number fields"),
    (["--range", "lr=0.1:0.01"], "must be below the high end"),
    (["--range", "lr=0.01:0.1:cubic"], "scaling 'cubic' is not one of"),
    (["--range", "epochs=2.5:9"], "epochs='2.5'"),
    (["--range", "optimizer=sgd,adam"], "'adam' is outside what the image accepts: sgd or adamw"),
    (["--range", "hflip=yes,no"], "true or false"),
    (["--range", "hflip=true,True"], "listed twice"),
    (["--range", "model=resnet50"], "give 2 to 30 values"),
    (["--range", "epochs=2:9"], "both a --hp and a --range"),
    (["--range", "lr=0.01:0.1", "--range", "lr=0.2:0.3"], "two ranges"),
    ([], "at least one --range"),
    (["--range", "lr=0.01:0.1", "--strategy", "grid"], "grid search takes categorical ranges only"),
    (["--range", "optimizer=sgd,adamw", "--strategy", "grid", "--max-jobs", "5"], "--max-jobs must be 2"),
    (["--range", "lr=0.01:0.1", "--strategy", "hyperband", "--early-stopping"], "Hyperband stops trials itself"),
    (["--range", "lr=0.01:0.1", "--strategy", "hyperband", "--hyperband-min-epochs", "9"], "from 1 to the epochs (8)"),
    (["--range", "lr=0.01:0.1", "--strategy", "annealing"], None),  # argparse's own refusal
    (["--range", "lr=0.01:0.1", "--objective", "validation:f1"], "the image logs"),
    (["--range", "lr=0.01:0.1", "--objective", "test:accuracy"], "measured on a 'test' channel"),
    (["--range", "lr=0.01:0.1", "--max-jobs", "4", "--max-parallel-jobs", "5"], "--max-parallel-jobs must be"),
    (["--range", "lr=0.01:0.1", *sum((["--warm-start-from", f"p{i}"] for i in range(6)), [])], "at most 5"),
    (["--range", "lr=0.01:0.1", "--hp", "freeze_backbone_epochs=2"], "would refuse every trial of these settings"),
    (["--range", "lr=0.01:0.1", "--instance-type", "ml.x99.huge"],
     "argument --instance-type: 'ml.x99.huge' is not a SageMaker instance type; training and tuning jobs take"),
])
def test_refusals_before_any_aws_call(aws_env, capsys, extra, message):
    argv = [*TUNE, *(["--range", "lr=0.01:0.1"] if extra[:1] == ["--job-name"] else []), *extra]
    before = tuning_jobs()
    assert cli.main(argv) == 2
    assert message is None or message in capsys.readouterr().err
    assert tuning_jobs() == before


def test_tune_needs_the_job_flags_unless_it_reads_a_best_trial(aws_env, capsys):
    assert cli.main(["tune", "--range", "lr=0.01:0.1"]) == 2
    assert "tune needs --image, --role, --channel, --output" in capsys.readouterr().err


def finished_trial(sagemaker, name: str, lr: str) -> None:
    """A trial as a tuning job leaves it: a completed training job with the tuned value."""
    sagemaker.create_training_job(
        TrainingJobName=name, RoleArn=ROLE, HyperParameters={"epochs": "8", "lr": lr,
                                                             "_tuning_objective_metric": "validation:accuracy"},
        AlgorithmSpecification={"TrainingImage": IMAGE.format("training"), "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://bucket/out"}, StoppingCondition={"MaxRuntimeInSeconds": 3600},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50})


def test_best_trial_is_shown_and_handed_to_deploy(live_aws, capsys):
    sagemaker = boto3.client("sagemaker")
    assert cli.main([*TUNE, "--range", "lr=0.01:0.2", "--job-name", "hpo-best"]) == 0
    finished_trial(sagemaker, "hpo-best-004-0a1b2c3d", "0.0734")
    live_aws.hyper_parameter_tuning_jobs["hpo-best"].best_training_job = {
        "TrainingJobName": "hpo-best-004-0a1b2c3d", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:"
        "training-job/hpo-best-004-0a1b2c3d", "TrainingJobStatus": "Completed", "CreationTime": dt.datetime.now(dt.timezone.utc),
        "TunedHyperParameters": {"lr": "0.0734"},
        "FinalHyperParameterTuningJobObjectiveMetric": {"Type": "Maximize", "MetricName": "validation:accuracy",
                                                        "Value": 0.9132}}
    live_aws.hyper_parameter_tuning_jobs["hpo-best"].OverallBestTrainingJob = None  # moto's spelling
    capsys.readouterr()
    assert cli.main(["tune", "--best", "hpo-best"]) == 0
    out = capsys.readouterr().out
    assert "best trial of hpo-best (Completed): hpo-best-004-0a1b2c3d (Completed)" in out
    assert "objective: validation:accuracy = 0.9132" in out and 'tuned: {"lr": 0.0734}' in out
    assert "model: s3://bucket/out/hpo-best-004-0a1b2c3d/output/model.tar.gz" in out
    assert cli.main(["tune", "--best", "hpo-best", "--name-only"]) == 0
    best = capsys.readouterr().out.strip()
    assert best == "hpo-best-004-0a1b2c3d"

    assert cli.main(["--wait-delay", "0.1", "deploy", "--skip-check", "--image", ecr_image("byoc-serving-tune", "0.1.0"),
                     "--role", ROLE,
                     "--endpoint", "hpo-best-ep", "--training-job", best]) == 0
    endpoint = sagemaker.describe_endpoint(EndpointName="hpo-best-ep")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://bucket/out/hpo-best-004-0a1b2c3d/output/model.tar.gz"


def test_best_of_a_tuning_job_without_a_finished_trial(live_aws, capsys):
    assert cli.main([*TUNE, "--range", "lr=0.01:0.2", "--job-name", "hpo-none"]) == 0
    job = live_aws.hyper_parameter_tuning_jobs["hpo-none"]
    job.best_training_job = job.OverallBestTrainingJob = None
    job.hyper_parameter_tuning_job_status = "InProgress"
    assert cli.main(["tune", "--best", "hpo-none"]) == 1
    assert "has no trial with an objective value yet" in capsys.readouterr().err


@pytest.mark.parametrize("ending, code, throttled", [("Completed", 0, False), ("Failed", 1, False),
                                                     ("Completed", 0, True)])
def test_tune_wait_follows_until_the_tuning_job_ends(live_aws, capsys, monkeypatch, request, ending, code, throttled):
    from moto.sagemaker.models import HyperParameterTuningJob, SageMakerModelBackend

    original = HyperParameterTuningJob.__init__

    def in_progress(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.hyper_parameter_tuning_job_status = "InProgress"
        self.training_job_status_counters = {"Completed": 0, "InProgress": 2, "RetryableError": 0,
                                             "NonRetryableError": 0, "Stopped": 0}
        self.best_training_job = self.OverallBestTrainingJob = None
    monkeypatch.setattr(HyperParameterTuningJob, "__init__", in_progress)
    name = f"hpo-wait-{ending.lower()}{'-throttled' if throttled else ''}"
    if throttled:  # following rides out what botocore would retry (test_follow.py has the rest)
        request.getfixturevalue("refusing")(SageMakerModelBackend, "describe_hyper_parameter_tuning_job",
                                            [None, ("ThrottlingException", "Rate exceeded", 400)] * 3)

    def sagemaker_runs_it():
        while name not in live_aws.hyper_parameter_tuning_jobs:
            time.sleep(0.01)
        job = live_aws.hyper_parameter_tuning_jobs[name]
        try:
            time.sleep(0.3)
            job.training_job_status_counters = {**job.training_job_status_counters, "Completed": 2, "InProgress": 0}
            time.sleep(0.3)
            job.failure_reason = "All training jobs failed" if ending == "Failed" else ""
        finally:  # the follower under test ends whatever happens here
            job.hyper_parameter_tuning_job_status = ending
    driver = threading.Thread(target=sagemaker_runs_it)
    driver.start()
    assert cli.main([*TUNE, "--range", "lr=0.01:0.2", "--job-name", name, "--wait", "--poll-seconds", "0.05"]) == code
    driver.join()
    captured = capsys.readouterr()
    assert f"{name}: InProgress; trials 0 completed, 2 in progress, 0 failed, 0 stopped (at most 10)" in captured.out
    assert f"{name}: InProgress; trials 2 completed, 0 in progress" in captured.out
    if ending == "Completed":
        assert f"`byoc-cloud tune --best {name}` shows the best trial" in captured.out
    else:
        assert f"error: tuning job {name} Failed: All training jobs failed" in captured.err
    assert (f"warning: no answer from AWS while following {name}" in captured.err) == throttled
