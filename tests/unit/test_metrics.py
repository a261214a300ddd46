import datetime
import re

from byoc.training.metrics import METRIC_DEFINITIONS, epoch_line, final_line, progress_line


def parse(lines: list[str]) -> dict[str, list[float]]:
    """What SageMaker does with metric_definitions: every match of every regex in the log."""
    found = {}
    for definition in METRIC_DEFINITIONS:
        for line in lines:
            for match in re.finditer(definition["Regex"], line):
                found.setdefault(definition["Name"], []).append(float(match.group(1)))
    return found


def test_every_metric_is_read_back_from_the_log_lines():
    log = [
        "2026-01-01 INFO byoc.training: " + epoch_line({"epoch": 1, "train_loss": 1.5, "train_acc": 0.5,
                                                        "valid_loss": 1.25, "valid_acc": 0.625, "lr": 0.05,
                                                        "images_per_sec": 812.5}),
        "2026-01-01 INFO byoc.training: " + epoch_line({"epoch": 2, "train_loss": 2.5e-05, "train_acc": 0.75,
                                                        "valid_loss": 0.5, "valid_acc": 0.875, "lr": 1e-7,
                                                        "images_per_sec": 900}),
        "2026-01-01 INFO byoc.training: " + final_line({"test_loss": 0.4375, "test_acc": 0.9}),
        "2026-01-01 INFO sagemaker-training-toolkit: Reporting training SUCCESS",
    ]
    assert parse(log) == {
        "epoch": [1, 2], "train:loss": [1.5, 2.5e-05], "train:accuracy": [0.5, 0.75],
        "validation:loss": [1.25, 0.5], "validation:accuracy": [0.625, 0.875], "learning_rate": [0.05, 1e-07],
        "train:images_per_second": [812.5, 900.0], "test:loss": [0.4375], "test:accuracy": [0.9],
    }


def test_definitions_fit_sagemaker_limits():
    names = [d["Name"] for d in METRIC_DEFINITIONS]
    assert len(names) == len(set(names)) <= 40
    assert all(len(d["Regex"]) <= 500 and re.compile(d["Regex"]).groups == 1 for d in METRIC_DEFINITIONS)


def progress_log_line() -> str:
    return "2026-01-01 INFO byoc.training: " + progress_line({
        "epoch": 2, "epochs": 3, "step": 120, "steps": 469, "running_loss": 0.4123,
        "images_per_sec": 812.34, "eta": datetime.timedelta(seconds=42)})


def test_the_progress_line_says_where_the_epoch_is():
    assert progress_log_line().endswith(
        "progress epoch 2/3 step 120/469 running_loss=0.412300 images_per_sec=812.3 eta=0:00:42")


def test_the_epoch_and_final_regexes_do_not_read_progress_lines():
    epoch = "2026-01-01 INFO byoc.training: " + epoch_line({"epoch": 2, "train_loss": 0.5, "train_acc": 0.8,
                                                            "lr": 0.01, "images_per_sec": 700})
    found = parse([progress_log_line(), epoch, progress_log_line()])
    assert found == {"epoch": [2], "train:loss": [0.5], "train:accuracy": [0.8], "learning_rate": [0.01],
                     "train:images_per_second": [700.0], "train:running_loss": [0.4123, 0.4123]}
