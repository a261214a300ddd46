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


# hyperparameters.json as two real senders write it (values are always strings in the file).
SDK_V2_ESTIMATOR = {  # SDK v2's generic Estimator: str() of each value
    "epochs": "2", "batch_size": "100", "lr": "0.01", "weight_decay": "1e-05", "amp": "False", "seed": "None",
    "pretrained_weights": "", "optimizer": "adamw", "warmup_epochs": "0", "progress_seconds": "0",
    "deterministic": "0", "hflip": "1",  # a flag as 1/0
}
TUNING_TRIAL = {  # a tuning job over a framework estimator: json.dumps of each static value, ranges as chosen
    "epochs": "2.0", "batch_size": "100.0", "lr": "1.0E-2", "optimizer": '"sgd"', "channels_last": "1",
    "progress_seconds": "0", "_tuning_objective_metric": '"validation:accuracy"',
    "sagemaker_estimator_class_name": '"PyTorch"', "sagemaker_estimator_module": '"sagemaker.pytorch.estimator"',
    "sagemaker_container_log_level": "20", "sagemaker_job_name": '"pytorch-training-2026-12-07-15-00-00-000"',
    "sagemaker_region": '"us-west-2"', "sagemaker_program": '"train.py"',
    "sagemaker_submit_directory": '"s3://bucket/pytorch-training/source/sourcedir.tar.gz"',
}
SAGEMAKER_CHANNEL = {"ContentType": "application/x-image", "TrainingInputMode": "File",
                     "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}


@pytest.mark.parametrize("sent", [SDK_V2_ESTIMATOR, TUNING_TRIAL], ids=["sdk-v2-estimator", "tuning-trial"])
def test_a_job_as_sagemaker_lays_it_out_trains_as_another_user(docker_client, small_data, tmp_path, sent):
    """Every file SageMaker writes, as it writes them: full channel and resource configs, one instance
    group, the platform's own files, a TensorBoardOutputConfig with a LocalPath of its own (where
    SageMaker syncs from), and for the trial a CheckpointConfig with one too (the estimator's job has
    none: it checkpoints into the image's /opt/ml/checkpoints); run as a user id without a passwd entry."""
    root = write_opt_ml(tmp_path / "opt_ml", {}, {})
    config = root / "input" / "config"
    (config / "hyperparameters.json").write_text(json.dumps(sent))
    channels = {"train": small_data / "valid", "validation": small_data / "valid", "model": small_data / "test"}
    (config / "inputdataconfig.json").write_text(json.dumps({name: SAGEMAKER_CHANNEL for name in channels}))
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "current_instance_type": "ml.g5.2xlarge", "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"], "network_interface_name": "ethwe", "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": "ml.g5.2xlarge", "hosts": ["algo-1"]}]}))
    platform = {
        "checkpointconfig.json": {"LocalPath": "/opt/ml/run-checkpoints", "S3Uri": "s3://bucket/checkpoints"},
        "tensorboardoutputconfig.json": {"LocalPath": "/opt/ml/output/run-tensorboard",
                                         "S3OutputPath": "s3://bucket/tensorboard"},
        "debughookconfig.json": {"LocalPath": "/opt/ml/output/tensors", "S3OutputPath": "s3://bucket/debug",
                                 "HookParameters": {}, "CollectionConfigurations": []},
        "profilerconfig.json": {"ProfilingIntervalInMilliseconds": 500, "S3OutputPath": "s3://bucket/profiler"},
        "trainingjobconfig.json": {"TrainingJobName": "byoc-job", "HyperParameters": sent},
        "metric-definition-regex.json": [{"Name": m["Name"], "Regex": m["Regex"]} for m in METRIC_DEFINITIONS],
        "upstreamoutputdataconfig.json": [], "init-config.json": {},
    }
    if sent is SDK_V2_ESTIMATOR:
        del platform["checkpointconfig.json"]
    for name, content in platform.items():
        (config / name).write_text(json.dumps(content))
    # TensorBoardOutputConfig's LocalPath is not made beforehand: the config file alone asks for scalars
    checkpoints, board = tmp_path / "run-checkpoints", root / "output" / "run-tensorboard"
    for folder in (checkpoints, root / "model", root / "output"):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o777)
    job = "byoc-job-001-5f1c2e7a"
    container = start_training(
        docker_client, root, channels, user="12345:12345",
        volumes=[f"{checkpoints}:/opt/ml/run-checkpoints:rw"],
        environment={"TRAINING_JOB_NAME": job, "AWS_REGION": "us-west-2",
                     "TRAINING_JOB_ARN": f"arn:aws:sagemaker:us-west-2:111111111111:training-job/{job}"})
    try:
        exit_code = container.wait(timeout=600)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert exit_code == 0, logs[-3000:]
    assert (root / "output" / "success").exists() and (root / "model" / "model.safetensors").exists()
    assert "channel(s) model are not read by this image" in logs
    assert list(board.glob("events.out.tfevents.*")), "no TensorBoard scalars in TensorBoardOutputConfig's LocalPath"
    assert not (root / "output" / "tensorboard").exists()
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    hp = metrics["hyperparameters"]
    if sent is TUNING_TRIAL:  # a trial's checkpoints are its own, and go once it has succeeded
        assert "removed its checkpoints in /opt/ml/run-checkpoints/" + job in logs
        assert (hp["epochs"], hp["batch_size"], hp["channels_last"]) == (2, 100, True)
    else:  # finished: its checkpoint after epoch 1 was written to the image's /opt/ml/checkpoints
        assert (hp["deterministic"], hp["hflip"], hp["amp"], hp["optimizer"]) == (False, True, False, "adamw")


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


def test_a_whole_data_set_as_the_train_channel_fails_before_training(docker_client, small_data, tmp_path):
    """train/, valid/ and test/ in one channel (`aws s3 sync` of the data set's folder) would otherwise
    train a model of three classes named test, train and valid."""
    run = run_training(docker_client, tmp_path, {"epochs": 1}, {"train": small_data})
    assert_clean_failure(run, "holds the split folder(s) test, train, valid, not class folders",
                         "Pass each split as its own channel")


def test_an_unzipped_macos_archive_of_phone_and_web_images_trains(docker_client, small_data, tmp_path):
    """The image's own Pillow reads what users upload (AVIF, a JPEG named .jfif, CMYK, 16-bit, palette,
    animated GIF), skips and counts what it cannot (HEIC, a truncated JPEG), and ignores the litter."""
    train = tmp_path / "data"
    for folder in ("001.T-shirt_top", "002.Trouser", "003.Pullover"):
        shutil.copytree(small_data / "valid" / folder, train / folder)
    (train / "__MACOSX" / "001.T-shirt_top").mkdir(parents=True)
    (train / "__MACOSX" / "001.T-shirt_top" / "._00001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (train / ".DS_Store").write_bytes(b"Bud1")
    (train / "002.Trouser" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    photo = Image.effect_mandelbrot((40, 30), (-2, -1, 1, 1), 50).convert("RGB")
    given = train / "001.T-shirt_top"
    photo.save(given / "phone.avif")
    photo.save(given / "web.jfif", "JPEG")
    photo.convert("CMYK").save(given / "print.jpg")
    photo.convert("I;16").save(given / "scan16.png")
    photo.convert("P").save(given / "palette.png", transparency=0)
    photo.save(given / "animated.gif", save_all=True, append_images=[photo.convert("L").convert("RGB")])
    (given / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    run = run_training(docker_client, tmp_path / "opt_ml", {"epochs": 1, "max_bad_image_fraction": 0.05},
                       {"train": train})
    assert run.exit_code == 0, run.failure or run.logs[-3000:]
    assert "skipping 1 unreadable image(s) (1 of them HEIC/HEIF" in run.logs
    metrics = json.loads((run.opt_ml / "output" / "data" / "metrics.json").read_text())
    assert metrics["data"]["channels"]["train"]["images"] == 90 + 6


@pytest.mark.parametrize(
    "hyperparameters, phrases",
    [
        ({"epochs": 0}, ["epochs=0", "an integer in [1, "]),
        ({"learning_rate": 0.1}, ["Unknown hyperparameter(s) learning_rate", "Allowed:"]),
        ({"model": "resnet9000"}, ["model='resnet9000'", "small_cnn"]),
        # RLEstimator's key, with no region (the toolkit's S3 client failed: "Invalid endpoint: https://s3..")
        ({"sagemaker_s3_output": "s3://bucket/out"}, ["sagemaker_s3_output", "no region is known"]),
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
