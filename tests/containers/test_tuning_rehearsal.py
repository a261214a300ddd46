"""A tuning job rehearsed locally: two trials of what `byoc-cloud tune` asks SageMaker for, run
through the training image as SageMaker runs them, the objective read back from their logs with
the request's own metric definitions (byoc.training.metrics.METRIC_DEFINITIONS).

SageMaker gives each trial the static hyperparameters as sent, each tuned value as plain text
(a categorical value exactly as listed, numbers as their text), `_tuning_objective_metric`, a
TRAINING_JOB_NAME of the form TUNING-NNN-xxxxxxxx, and the same synced /opt/ml/checkpoints as
every other trial of the tuning job. Here trial 1 is interrupted (SIGTERM, as on spot) after its
first checkpoint, trial 2 runs meanwhile over the same checkpoint folder and must start fresh,
and trial 1 restarts and resumes its own checkpoint.
"""
import json
import re
import time

import pytest

from byoc import fashion_mnist
from byoc.training.metrics import METRIC_DEFINITIONS
from byoc_cloud import cli
from support import start_training, write_opt_ml

pytestmark = pytest.mark.docker
TUNE = ["--dry-run", "tune", "--image", "byoc-training", "--role", "arn:aws:iam::123456789012:role/r",
        "--channel", "train=s3://bucket/train", "--channel", "valid=s3://bucket/valid", "--output", "s3://bucket/out",
        "--hp", "epochs=3", "--hp", "checkpoint_every=1", "--hp", "workers=1", "--instance-type", "ml.m5.xlarge",
        "--range", "lr=0.02:0.08:log", "--range", "hflip=True,False", "--range", "batch_size=64:128",
        "--job-name", "rehearsal"]


def tuning_request(monkeypatch, capsys) -> dict:
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(TUNE) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])["request"]


def trial_values(request: dict, end: int) -> dict[str, str]:
    """One trial's tuned values as SageMaker writes them: a range's end (0: low, 1: high), a category."""
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    values = {r["Name"]: r["Values"][end] for r in ranges.get("CategoricalParameterRanges", [])}
    for kind in ("ContinuousParameterRanges", "IntegerParameterRanges"):
        values |= {r["Name"]: r["MinValue" if end == 0 else "MaxValue"] for r in ranges.get(kind, [])}
    return values


def prepared(root, request: dict, tuned: dict, channels: dict):
    write_opt_ml(root, {}, channels)
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    hyperparameters = {**request["TrainingJobDefinition"]["StaticHyperParameters"], **tuned,
                       "_tuning_objective_metric": objective}
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return root


def run(docker_client, root, channels, name, checkpoints, stop_after: str | None = None) -> tuple[int, str]:
    container = start_training(docker_client, root, channels, environment={"TRAINING_JOB_NAME": name},
                               checkpoints=checkpoints)
    try:
        if stop_after:
            deadline = time.monotonic() + 300
            while stop_after not in container.logs().decode() and time.monotonic() < deadline:
                time.sleep(0.2)
            container.stop(timeout=60)
        code = container.wait(timeout=600)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def objective_value(request: dict, logs: str) -> float:
    """What SageMaker reads: the objective metric's regex, its last match in the log."""
    name = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    [definition] = [d for d in request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
                    if d["Name"] == name]
    return float(re.findall(definition["Regex"], logs)[-1])


@pytest.fixture(scope="module")
def tiny_data(idx_dir, tmp_path_factory):
    """100 training and 20 validation images per class: three short runs."""
    out = tmp_path_factory.mktemp("tiny") / "fashion-mnist"
    fashion_mnist.convert(idx_dir, out, valid_per_class=20, train_per_class=100, test_per_class=1)
    return out


def test_two_trials_of_the_tuning_request_run_apart_and_report_their_objective(docker_client, tiny_data, tmp_path,
                                                                                monkeypatch, capsys):
    request = tuning_request(monkeypatch, capsys)
    assert request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    channels = {"train": tiny_data / "train", "valid": tiny_data / "valid"}
    checkpoints = tmp_path / "checkpoints"  # the tuning job's one synced folder
    checkpoints.mkdir()
    first, second = "rehearsal-001-0a1b2c3d", "rehearsal-002-4e5f6a7b"
    tuned = {first: trial_values(request, 0), second: trial_values(request, 1)}
    assert tuned[first] == {"hflip": "true", "lr": "0.02", "batch_size": "64"}
    assert tuned[second] == {"hflip": "false", "lr": "0.08", "batch_size": "128"}
    roots = {name: prepared(tmp_path / name, request, tuned[name], channels) for name in (first, second)}

    code, interrupted = run(docker_client, roots[first], channels, first, checkpoints, stop_after="checkpoint written")
    assert code == 143, interrupted[-3000:]
    assert list((checkpoints / first).glob("checkpoint-*.pt"))  # its own folder in the shared one

    code, logs = run(docker_client, roots[second], channels, second, checkpoints)
    assert code == 0, logs[-3000:]
    assert "resuming from" not in logs and "resumed at" not in logs  # the first trial's checkpoint is not its own
    assert "hflip=False" in logs and "lr=0.08" in logs and "batch_size=128" in logs  # "false" read as False
    assert not (checkpoints / second).exists() and list((checkpoints / first).glob("checkpoint-*.pt"))

    code, resumed = run(docker_client, roots[first], channels, first, checkpoints)
    assert code == 0, resumed[-3000:]
    assert f"resuming from /opt/ml/checkpoints/{first}/" in resumed and "hflip=True" in resumed
    assert not (checkpoints / first).exists()  # a finished trial leaves nothing for later trials to download

    for name, log in ((first, resumed), (second, logs)):
        value = objective_value(request, log)
        history = json.loads((roots[name] / "output" / "data" / "metrics.json").read_text())["epochs"]
        assert value == pytest.approx(history[-1]["valid_acc"], abs=1e-6) and 0 < value <= 1
