"""`train` honours SageMaker's training contract."""
import json
import re
import shutil

import pytest
from PIL import Image
from safetensors.torch import load_file

from byoc.training.metrics import METRIC_DEFINITIONS
from support import TrainingRun, run_training, start_training, write_opt_ml

pytestmark = pytest.mark.docker


def test_training_writes_model_metrics_and_success(trained):
    model_dir, output = trained.opt_ml / "model", trained.opt_ml / "output"
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.safetensors"]
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["architecture"] == "small_cnn" and spec["class_names"][0] == "T-shirt top"
    assert spec["preprocessing"]["crop_size"] == 28 and len(spec["class_names"]) == 10
    assert load_file(model_dir / "model.safetensors")  # tensors only: nothing to unpickle
    assert (output / "success").exists() and not (output / "failure").exists()

    for picture in ("training_curves.png", "confusion_matrix.png"):
        with Image.open(output / "data" / picture) as image:
            assert image.format == "PNG"
    metrics = json.loads((output / "data" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    assert metrics["test_acc"] > 0.7  # 500 images a class, 4 epochs: well above chance (0.1)


def test_epoch_lines_are_logged(trained):
    lines = [line for line in trained.logs.splitlines() if "epoch=" in line and "valid_acc=" in line]
    assert len(lines) == 4


def test_no_command_trains_too(docker_client, small_data, tmp_path):
    """SageMaker SDK v3 local mode starts the training image without `train`."""
    run = run_training(docker_client, tmp_path, {"epochs": 1}, {"train": small_data / "valid"}, command=None)
    assert run.exit_code == 0, run.logs[-2000:]
    assert (tmp_path / "model" / "model.safetensors").exists()


def assert_clean_failure(run, *phrases):
    assert run.exit_code != 0
    assert run.failure is not None, "no /opt/ml/output/failure written"
    assert "\n" not in run.failure.strip() and "Traceback" not in run.failure
    for phrase in phrases:
        assert phrase in run.failure
    assert not (run.opt_ml / "model" / "model.safetensors").exists()
    assert not (run.opt_ml / "output" / "success").exists()


def test_missing_train_channel_fails_with_a_reason(docker_client, small_data, tmp_path):
    run = run_training(docker_client, tmp_path, {"epochs": 1}, {"valid": small_data / "valid"})
    assert_clean_failure(run, "'train' channel is missing", "got channels: valid")


def test_class_folders_that_give_one_label_twice_fail_before_training(docker_client, small_data, tmp_path):
    """001.Dog and 002.Dog both answer "Dog": the endpoint would refuse the package (byoc.contract), so
    the job refuses the data instead of training a model that cannot be served."""
    train = tmp_path / "data"
    for folder, source in (("001.Dog", "001.T-shirt_top"), ("002.Dog", "002.Trouser")):
        shutil.copytree(small_data / "valid" / source, train / folder)
    run = run_training(docker_client, tmp_path / "opt_ml", {"epochs": 1}, {"train": train})
    assert_clean_failure(run, "class_names repeats ['Dog']", "folders 001.Dog, 002.Dog")


@pytest.mark.parametrize(
    "hyperparameters, phrases",
    [
        ({"epochs": 0}, ["epochs=0", "an integer in [1, "]),
        ({"learning_rate": 0.1}, ["Unknown hyperparameter(s) learning_rate", "Allowed:"]),
        ({"model": "resnet9000"}, ["model='resnet9000'", "small_cnn"]),
    ],
)
def test_bad_hyperparameter_fails_before_training(docker_client, small_data, tmp_path, hyperparameters, phrases):
    run = run_training(docker_client, tmp_path, hyperparameters, {"train": small_data / "valid"})
    assert_clean_failure(run, *phrases)
    assert "epoch=1" not in run.logs


def progress_lines(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if " progress epoch " in line]


def test_progress_lines_while_an_epoch_runs(trained):
    """progress_seconds=1: a line a second, with the step of the epoch's 78 (5,000 images, batch 64)."""
    lines = progress_lines(trained.logs)
    assert len(lines) >= 4, trained.logs[-3000:]
    pattern = re.compile(r"progress epoch ([1-4])/4 step (\d+)/78 running_loss=(\d+\.\d{6}) "
                         r"images_per_sec=(\d+\.\d) eta=\d+:\d\d:\d\d$")
    for line in lines:
        found = pattern.search(line)
        assert found and 1 <= int(found.group(2)) <= 78 and float(found.group(4)) > 0, line


def test_sagemaker_reads_each_metric_from_the_real_log(trained):
    """METRIC_DEFINITIONS over the job's own log, as SageMaker applies them: progress lines are not epochs."""
    found = {}
    for definition in METRIC_DEFINITIONS:
        for line in trained.logs.splitlines():
            for match in re.finditer(definition["Regex"], line):
                found.setdefault(definition["Name"], []).append(float(match.group(1)))
    metrics = json.loads((trained.opt_ml / "output/data/metrics.json").read_text())
    assert found["epoch"] == [1, 2, 3, 4]
    assert found["validation:accuracy"] == [round(e["valid_acc"], 6) for e in metrics["epochs"]]
    assert found["train:loss"] == [round(e["train_loss"], 6) for e in metrics["epochs"]]
    assert found["test:accuracy"] == [round(metrics["test_acc"], 6)]
    assert len(found["train:running_loss"]) == len(progress_lines(trained.logs))


def test_tensorboard_scalars_for_each_epoch_and_the_test(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained.opt_ml / "output" / "tensorboard"))
    events.Reload()
    metrics = json.loads((trained.opt_ml / "output/data/metrics.json").read_text())
    for name in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "images_per_sec"):
        scalars = events.Scalars(f"epoch/{name}")
        assert [s.step for s in scalars] == [78, 156, 234, 312], name  # the training step at each epoch's end
        assert [s.value for s in scalars] == pytest.approx([e[name] for e in metrics["epochs"]], rel=1e-5), name
    assert events.Scalars("test/acc")[0].value == pytest.approx(metrics["test_acc"])
    assert len(events.Scalars("progress/running_loss")) == len(progress_lines(trained.logs))


def test_metrics_say_what_the_job_ran_with(trained):
    metrics = json.loads((trained.opt_ml / "output/data/metrics.json").read_text())
    assert metrics["hyperparameters"]["epochs"] == 4 and metrics["hyperparameters"]["tensorboard"] is True
    assert metrics["data"]["hosts"] == {"algo-1": {"train": 5000, "valid": 300, "test": 300}}
    assert metrics["data"]["steps_per_epoch"] == 78
    best = max(metrics["epochs"], key=lambda e: e["valid_acc"])
    assert metrics["model"] == {"weights": "best_validated", "epoch": best["epoch"], "valid_acc": best["valid_acc"]}


def two_host_tree(root, channels, inputs=None, resource_extra=None):
    """An /opt/ml tree of host algo-1 in a two-host job whose other host never comes: anything that
    waits for it waits distributed_timeout (600 s)."""
    write_opt_ml(root, {"epochs": 1, "distributed_timeout": 600}, channels)
    config = root / "input" / "config"
    if inputs:
        (config / "inputdataconfig.json").write_text(json.dumps(inputs))
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0",
        **(resource_extra or {})}))
    return root


REFUSALS = {
    "pipe": ({"train": {"TrainingInputMode": "Pipe"}}, None, "use TrainingInputMode=Pipe"),
    "fastfile manifest": ({"train": {"TrainingInputMode": "FastFile"}}, None,
                          "'train' channel is in FastFile mode but /opt/ml/input/data/train is not a folder"),
    "heterogeneous": (None, {"current_group_name": "gpus", "instance_groups": [
        {"instance_group_name": "gpus", "instance_type": "ml.g5.xlarge", "hosts": ["algo-1"]},
        {"instance_group_name": "data", "instance_type": "ml.c5.xlarge", "hosts": ["algo-2"]}]},
        "heterogeneous cluster (gpus: 1 x ml.g5.xlarge; data: 1 x ml.c5.xlarge"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_unsupported_inputs_and_clusters_are_refused_before_any_wait(docker_client, small_data, tmp_path, case):
    inputs, resources, phrase = REFUSALS[case]
    channels = {"train": small_data / "valid"}
    if case == "fastfile manifest":
        (tmp_path / "manifest").write_text('[{"prefix": "s3://bucket/fashion/"}, "train/001/0.png"]')
        channels = {"train": tmp_path / "manifest"}
    root = two_host_tree(tmp_path / "opt_ml", channels, inputs, resources)
    container = start_training(docker_client, root, {} if case == "pipe" else channels)
    try:
        exit_code = container.wait(timeout=120)["StatusCode"]  # the rendezvous alone would wait 600 s
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    run = TrainingRun(exit_code, logs, root)
    assert_clean_failure(run, phrase)
    assert "distributed training:" not in logs  # failed before launching anything that waits
