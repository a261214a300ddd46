"""Following jobs: `train --wait`, `status`, `logs [--follow]`, against moto in this process.

moto completes a training job the moment it is created and never logs; here new jobs start
InProgress (moto's job object, patched), and a thread plays SageMaker: it appends secondary
status transitions and CloudWatch log events (through boto3, as the service writes them) and
then ends the job. The CLI only reads, as it does against AWS.
"""
import itertools
import os
import signal
import subprocess
import sys
import threading
import time

import boto3
import pytest
from moto.core.utils import utcnow
from moto.logs.models import LogsBackend
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend

from byoc_cloud import cli, follow
from cli_requests import IMAGE, ROLE

TRAIN = ["train", "--image", IMAGE.format("training"), "--role", ROLE, "--channel", "train=s3://bucket/fm/train",
         "--output", "s3://bucket/out", "--instance-type", "ml.g4dn.xlarge", "--poll-seconds", "0.05",
         "--skip-check"]  # a stand-in image URI: the image check has its own tests (test_preflight.py)


@pytest.fixture
def starts_in_progress(live_aws, monkeypatch):
    """New training jobs start as SageMaker starts them: InProgress, Starting."""
    original = FakeTrainingJob.__init__

    def starting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.training_job_status, self.secondary_status = "InProgress", "Starting"
    monkeypatch.setattr(FakeTrainingJob, "__init__", starting)
    return live_aws


class SageMaker(threading.Thread):
    """Runs one job through its states once it exists: [("transition", status, message),
    ("log", host, line), ("end", status, failure_reason)], gap seconds apart."""

    def __init__(self, backend, name: str, steps: list, gap: float = 0.15):
        super().__init__(daemon=True)
        self.backend, self.name, self.steps, self.gap = backend, name, steps, gap
        self.logs = boto3.client("logs")

    def log(self, host: str, message: str) -> None:
        stream = f"{self.name}/{host}-1760000000"
        try:
            self.logs.create_log_group(logGroupName=follow.LOG_GROUP)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        try:
            self.logs.create_log_stream(logGroupName=follow.LOG_GROUP, logStreamName=stream)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        self.logs.put_log_events(logGroupName=follow.LOG_GROUP, logStreamName=stream,
                                 logEvents=[{"timestamp": int(time.time() * 1000), "message": message}])

    def run(self) -> None:
        while self.name not in self.backend.training_jobs:
            time.sleep(0.01)
        job = self.backend.training_jobs[self.name]
        try:
            self.play(job)
        except Exception as error:  # end the job, so that a follower under test cannot wait forever
            job.failure_reason, job.training_job_status = f"the test's SageMaker failed: {error!r}", "Failed"
            raise

    def play(self, job) -> None:
        for kind, first, second in self.steps:
            time.sleep(self.gap)
            if kind == "transition":
                job.secondary_status = first
                job.secondary_status_transitions.append({"Status": first, "StartTime": utcnow(),
                                                         "StatusMessage": second})
            elif kind == "log":
                self.log(first, second)
            else:
                if second:
                    job.failure_reason = second
                job.secondary_status, job.training_job_status = first, first


RUN = [("transition", "Downloading", "Downloading input data"), ("log", "algo-1", "epoch=1 train_loss=0.9"),
       ("transition", "Interrupted", "Spot capacity was reclaimed; waiting for capacity"),
       ("transition", "Training", "Training image download completed. Training in progress."),
       ("log", "algo-1", "epoch=2 train_loss=0.5"), ("transition", "Uploading", "Uploading generated training model")]


def test_train_wait_streams_transitions_and_log_lines_until_the_job_completes(starts_in_progress, capsys):
    sagemaker = SageMaker(starts_in_progress, "follow-ok", [*RUN, ("end", "Completed", None)])
    sagemaker.start()
    assert cli.main([*TRAIN, "--job-name", "follow-ok", "--wait"]) == 0
    sagemaker.join()
    out = capsys.readouterr().out
    expected = ["follow-ok: Starting - Preparing the instances for training",
                "follow-ok: Downloading - Downloading input data", "epoch=1 train_loss=0.9",
                "follow-ok: Interrupted - Spot capacity was reclaimed", "follow-ok: Training - Training image",
                "epoch=2 train_loss=0.5", "follow-ok: Uploading - Uploading generated training model",
                "training job follow-ok Completed: model s3://bucket/out/follow-ok/output/model.tar.gz"]
    positions = [out.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), out
    assert out.count("epoch=1 train_loss=0.9") == 1  # each line once


def test_one_look_that_finds_several_steps_prints_them_in_the_order_they_happened(starts_in_progress, capsys):
    # The job moves faster than the follower looks (a loaded laptop, a long --poll-seconds):
    # each look finds transitions and the log lines written between them.
    sagemaker = SageMaker(starts_in_progress, "follow-fast", [*RUN, ("end", "Completed", None)], gap=0.02)
    sagemaker.start()
    assert cli.main([*TRAIN, "--poll-seconds", "0.5", "--job-name", "follow-fast", "--wait"]) == 0  # the last counts
    sagemaker.join()
    out = capsys.readouterr().out
    expected = ["Downloading - Downloading input data", "epoch=1 train_loss=0.9", "Interrupted - Spot capacity",
                "Training - Training image", "epoch=2 train_loss=0.5", "Uploading - Uploading generated",
                "training job follow-fast Completed"]
    positions = [out.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), out


THROTTLED = ("ThrottlingException", "Rate exceeded", 400)
UNAVAILABLE = ("ServiceUnavailable", "Service is unavailable", 503)


def test_following_rides_out_throttles_and_5xx_answers(starts_in_progress, refusing, capsys):
    # A job of hours meets these: CloudWatch Logs' per-account rate, a service's bad minute.
    refusing(SageMakerModelBackend, "describe_training_job", [None, None, THROTTLED, UNAVAILABLE, THROTTLED])
    refusing(LogsBackend, "get_log_events", [None, UNAVAILABLE, None, THROTTLED, UNAVAILABLE])
    sagemaker = SageMaker(starts_in_progress, "follow-throttled", [*RUN, ("end", "Completed", None)])
    sagemaker.start()
    assert cli.main([*TRAIN, "--job-name", "follow-throttled", "--wait"]) == 0
    sagemaker.join()
    captured = capsys.readouterr()
    expected = ["Downloading - Downloading input data", "epoch=1 train_loss=0.9", "Interrupted - Spot capacity",
                "Training - Training image", "epoch=2 train_loss=0.5", "Uploading - Uploading generated",
                "training job follow-throttled Completed"]
    positions = [captured.out.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), captured
    assert captured.out.count("epoch=1 train_loss=0.9") == 1 and captured.out.count("epoch=2 train_loss=0.5") == 1
    assert "warning: no answer from AWS while following follow-throttled" in captured.err
    assert "following follow-throttled again" in captured.err


def test_following_gives_up_after_its_patience_and_says_the_job_runs_on(starts_in_progress, refusing, monkeypatch,
                                                                         capsys):
    monkeypatch.setattr(follow, "PATIENCE_S", 0.5)
    refusing(SageMakerModelBackend, "describe_training_job",
             itertools.chain([None], itertools.repeat(UNAVAILABLE)))
    assert cli.main([*TRAIN, "--job-name", "follow-lost", "--wait"]) == follow.LOST
    err = capsys.readouterr().err
    assert "error: stopped following follow-lost: no answer from AWS for 0.5 s" in err
    assert "The job itself keeps running on SageMaker and its outcome is not known here" in err
    assert starts_in_progress.training_jobs["follow-lost"].training_job_status == "InProgress"


def test_following_stops_at_once_on_an_error_that_will_not_pass(starts_in_progress, refusing, capsys):
    denied = ("AccessDeniedException", "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: "
              "logs:GetLogEvents", 400)
    refusing(LogsBackend, "get_log_events", itertools.repeat(denied))
    sagemaker = SageMaker(starts_in_progress, "follow-denied", [("log", "algo-1", "epoch=1 train_loss=0.9")])
    sagemaker.start()
    started = time.monotonic()
    assert cli.main([*TRAIN, "--job-name", "follow-denied", "--wait"]) == follow.LOST
    assert time.monotonic() - started < 30  # not after PATIENCE_S
    sagemaker.join()
    err = capsys.readouterr().err
    assert "error: stopped following follow-denied: An error occurred (AccessDeniedException)" in err
    assert "not authorized to perform: logs:GetLogEvents" in err and "keeps running on SageMaker" in err


def test_train_wait_exits_non_zero_with_sagemakers_failure_reason(starts_in_progress, capsys):
    reason = "AlgorithmError: Hyperparameter epochs=0 is not valid: it must be an integer >= 1."
    sagemaker = SageMaker(starts_in_progress, "follow-failed", [("log", "algo-1", "loading data"),
                                                                ("end", "Failed", reason)])
    sagemaker.start()
    assert cli.main([*TRAIN, "--job-name", "follow-failed", "--wait"]) == 1
    sagemaker.join()
    captured = capsys.readouterr()
    assert "loading data" in captured.out
    assert captured.err.strip().endswith(f"error: training job follow-failed Failed: {reason}")


def test_status_of_a_training_job_a_tuning_job_and_neither(starts_in_progress, capsys):
    boto3.client("sagemaker").create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="status-hpo", HyperParameterTuningJobConfig={
            "Strategy": "Random", "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}},
        TrainingJobDefinition={"AlgorithmSpecification": {"TrainingImage": IMAGE.format("training"),
                                                          "TrainingInputMode": "File"},
                               "RoleArn": ROLE, "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
                               "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                               "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1,
                                                  "VolumeSizeInGB": 50}})
    sagemaker = SageMaker(starts_in_progress, "status-job", [("end", "Failed", "ClientError: no train channel")])
    sagemaker.start()
    assert cli.main([*TRAIN, "--job-name", "status-job"]) == 0  # no --wait: returns once it is created
    sagemaker.join()
    capsys.readouterr()
    assert cli.main(["status", "status-job"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("status-job: Failed (Failed); 1 x ml.g4dn.xlarge")
    assert "Starting     Preparing the instances for training" in out and "failure: ClientError: no train channel" in out
    assert cli.main(["status", "status-hpo"]) == 0
    assert capsys.readouterr().out.startswith("status-hpo: Completed; trials 1 completed, 0 in progress")
    assert cli.main(["status", "no-such-job"]) == 1
    assert "no training job or tuning job named no-such-job" in capsys.readouterr().err


def test_logs_of_a_two_host_job_name_each_host(starts_in_progress, capsys):
    steps = [("log", "algo-1", "rank 0 ready"), ("log", "algo-2", "rank 1 ready"), ("end", "Completed", None)]
    sagemaker = SageMaker(starts_in_progress, "logs-two", steps)
    other = SageMaker(starts_in_progress, "logs-two-b", [("log", "algo-1", "another job's line")])  # same prefix
    sagemaker.start(), other.start()
    assert cli.main([*TRAIN, "--job-name", "logs-two", "--instance-count", "2"]) == 0
    assert cli.main([*TRAIN, "--job-name", "logs-two-b"]) == 0
    sagemaker.join(), other.join()
    capsys.readouterr()
    assert cli.main(["logs", "logs-two"]) == 0
    assert capsys.readouterr().out.splitlines() == ["[algo-1] rank 0 ready", "[algo-2] rank 1 ready"]
    assert cli.main(["logs", "logs-two", "--follow", "--poll-seconds", "0.05"]) == 0  # it has ended: prints, returns
    assert "training job logs-two Completed" in capsys.readouterr().out
    assert cli.main(["logs", "logs-nothing"]) == 0
    assert "no log lines for logs-nothing yet" in capsys.readouterr().err


def test_ctrl_c_stops_the_following_never_the_job(starts_in_progress, moto_in_process, tmp_path):
    """The CLI in its own process, interrupted as a user would; the job is still running afterwards."""
    sagemaker = SageMaker(starts_in_progress, "follow-ctrl-c", [("log", "algo-1", "epoch=1 train_loss=0.9")])
    sagemaker.start()
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_in_process}
    # Ctrl-C's default action in the CLI even when the suite itself runs as a background job (`make test &`),
    # whose shell starts it with SIGINT ignored: Python then never raises KeyboardInterrupt.
    process = subprocess.Popen([sys.executable, "-m", "byoc_cloud.cli", *TRAIN, "--job-name", "follow-ctrl-c",
                                "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(60, process.kill)  # a follower that never prints the line must not hang the suite
    watchdog.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "epoch=1 train_loss=0.9" in line:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    watchdog.cancel()
    assert process.returncode == 130, (lines, out, err)
    assert "stopped following follow-ctrl-c; the job itself keeps running on SageMaker" in err
    assert "Traceback" not in err
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="follow-ctrl-c")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("InProgress", "Starting")
