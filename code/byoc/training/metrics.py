"""The job's log lines (per epoch, final, progress within an epoch) and the regexes SageMaker
reads metrics from.

They live here together so they cannot drift apart: the progress line names no field the epoch
and final regexes look for (no `epoch=`, no `train_loss=`), so they never mis-read it. Pass METRIC_DEFINITIONS as a
training job's `metric_definitions` (or a tuning job's objective source):

    from byoc.training.metrics import METRIC_DEFINITIONS
"""
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
EPOCH_FIELDS = ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "images_per_sec")
FINAL_FIELDS = ("test_loss", "test_acc")
FORMATS = {"lr": ".6g"}  # a learning rate of 1e-7 would read 0.000000 at six decimals


def epoch_line(record: dict) -> str:
    """'epoch=3 train_loss=0.412300 train_acc=0.851200 ...': fields in a fixed order."""
    fields = " ".join(f"{name}={record[name]:{FORMATS.get(name, '.6f')}}" for name in EPOCH_FIELDS if name in record)
    return f"epoch={record['epoch']} {fields}"


def final_line(record: dict) -> str:
    return "final " + " ".join(f"{name}={record[name]:.6f}" for name in FINAL_FIELDS if name in record)


def progress_line(figures: dict) -> str:
    """'progress epoch 2/3 step 120/469 running_loss=0.412300 images_per_sec=812.3 eta=0:00:42'
    (running_loss: this process's mean loss over the epoch so far; images_per_sec: the job's)."""
    return (f"progress epoch {figures['epoch']}/{figures['epochs']} step {figures['step']}/{figures['steps']} "
            f"running_loss={figures['running_loss']:.6f} images_per_sec={figures['images_per_sec']:.1f} "
            f"eta={figures['eta']}")


# Log field -> the metric's name in SageMaker (CloudWatch, tuning objectives).
METRIC_NAMES = {
    "train_loss": "train:loss", "train_acc": "train:accuracy",
    "valid_loss": "validation:loss", "valid_acc": "validation:accuracy",
    "lr": "learning_rate", "images_per_sec": "train:images_per_second",
    "test_loss": "test:loss", "test_acc": "test:accuracy",
    "running_loss": "train:running_loss",
}


def _definition(prefix: str, field: str) -> dict:
    return {"Name": METRIC_NAMES[field], "Regex": rf"{prefix}\b.*\b{field}={NUMBER}"}


METRIC_DEFINITIONS = (
    [{"Name": "epoch", "Regex": r"epoch=(\d+) "}]
    + [_definition(r"epoch=\d+", field) for field in EPOCH_FIELDS]
    + [_definition("final", field) for field in FINAL_FIELDS]
    + [_definition(r"progress epoch \d+/\d+ step", "running_loss")]
)
