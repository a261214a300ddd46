"""The hyperparameters a job accepts: one table, each field with its default, limits and meaning.

Values arrive as every client sends them. SageMaker writes each one as a string;
sagemaker-training JSON-decodes what it can, so a JSON-encoded "3" (SDK v3, boto3,
byoc-cloud) arrives as 3, while SDK v2's generic Estimator, which sends str() of each
value, gives "False", "None" or "1e-05". Both are read here: booleans in any case,
numbers from their text, None/null as "the default". A text field (a file name) keeps the
text SageMaker wrote when the caller passes it: the toolkit's decoding would turn a file
named 1e5 into 100000.0. Anything unknown, mistyped or out of range stops the job before
training, naming the parameter and what it accepts.

No torch here: checking a job's hyperparameters must stay cheap (and host tools use it).
The README's hyperparameter table is this module's markdown_table()
(`python -m byoc.training.hyperparameters` prints it; a unit test compares them).
"""
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from byoc.contract import ARCHITECTURES
from byoc.training.errors import HyperparameterError

# Keys SageMaker itself adds (a tuning job names its objective); not ours to check.
SAGEMAKER_KEYS = ("_tuning_objective_metric",)
# "1"/"0" as well: a tuning job's categorical or integer range over a flag sends them, and
# sagemaker-training hands them on JSON-decoded, as the numbers 1 and 0.
BOOLEAN_SPELLINGS = {"true": True, "false": False, "1": True, "0": False}
RESUME_CHOICES = ("auto", "force")
INT_MAX = 2**31 - 1  # counts and seconds reach C code as a C int (the launcher's timedelta, ...)
SEED_MAX = 2**63 - 1  # a signed 64-bit integer: what torch's and numpy's seeds have in common
LR_MAX = 100.0  # far above any working rate (0.1 scaled linearly to a 65536 batch is 25.6)
WEIGHT_DECAY_MAX = 10  # far above any working value; SGD hands it to torch as a float32 (max 3.4e38)


def option(default, allowed: str, check: Callable, meaning: str, operational: bool = False):
    """A field whose limits and meaning live beside its default. `operational`: how the job runs,
    not what it learns (may differ when a job resumes another's checkpoint)."""
    return field(default=default, metadata={"allowed": allowed, "check": check, "meaning": meaning,
                                            "operational": operational})


def flag(default: bool, meaning: str, operational: bool = False):
    return option(default, "true or false", lambda v: True, meaning, operational)


def at_least(minimum, kind: str = "an integer"):
    return f"{kind} >= {minimum}", (lambda v: v >= minimum)


def between(low, high, kind: str = "a number"):
    return f"{kind} in [{low}, {high}]", (lambda v: low <= v <= high)


def count(minimum: int, maximum: int = INT_MAX, kind: str = "an integer"):
    """An integer field: bounded above too, so no value overflows where torch hands it to C."""
    return between(minimum, maximum, kind)


@dataclass(frozen=True)
class Hyperparameters:
    model: str = option("small_cnn", "one of " + ", ".join(ARCHITECTURES), lambda v: v in ARCHITECTURES,
                        "small_cnn; resnet_small (ResNet-9 style); wrn28_10 (WideResNet-28-10, dropout 0.3); "
                        "resnet50 (torchvision)")
    epochs: int = option(3, *count(1), "passes over the training channel")
    batch_size: int = option(128, *count(1), "the global batch: split over all hosts x GPUs (below)")
    optimizer: str = option("sgd", "sgd or adamw", lambda v: v in ("sgd", "adamw"),
                            "sgd (Nesterov momentum) or adamw")
    lr: float = option(0.05, f"a number in (0, {LR_MAX:g}]", lambda v: 0 < v <= LR_MAX, "peak learning rate")
    momentum: float = option(0.9, "a number in [0, 1)", lambda v: 0 <= v < 1, "SGD momentum")
    weight_decay: float = option(5e-4, *between(0, WEIGHT_DECAY_MAX), "L2 penalty")
    warmup_epochs: float = option(0.5, *between(0, INT_MAX), "linear warmup, then cosine decay to zero")
    label_smoothing: float = option(0.0, "a number in [0, 1)", lambda v: 0 <= v < 1, "0 = off")
    mixup_alpha: float = option(0.0, *at_least(0, "a number"), "torchvision MixUp; 0 = off")
    cutmix_alpha: float = option(0.0, *at_least(0, "a number"), "torchvision CutMix; 0 = off")
    clip_grad_norm: float = option(0.0, *at_least(0, "a number"), "0 = off")
    early_stopping_patience: int = option(0, *count(0), "epochs without a better validation accuracy (needs "
                                                           "`valid`); the best epoch's weights are kept; 0 = off")
    amp: bool = flag(True, "on GPUs: bf16 where supported, else fp16 with a grad scaler; CPUs train in fp32")
    channels_last: bool = flag(True, "NHWC memory format: faster convolutions on CPUs (oneDNN) and GPUs",
                               operational=True)
    compile: bool = flag(False, "torch.compile the model", operational=True)
    hflip: bool = flag(True, "random horizontal flips")
    rotation: float = option(0.0, *between(0, 180, "a number of degrees"), "maximum rotation either way")
    crop_padding: int = option(-1, f"-1 or an integer in [0, {INT_MAX}]", lambda v: -1 <= v <= INT_MAX,
                               "pad-and-crop for images up to 64 px, px a side; -1 = image_size // 8")
    crop_scale_min: float = option(0.25, "a number in (0, 1]", lambda v: 0 < v <= 1,
                                   "random-resized-crop's smallest area for larger images")
    cutout_size: int = option(0, *count(0), "side of one CoarseDropout hole in px; 0 = off")
    color_jitter: float = option(0.0, *between(0, 1), "brightness, contrast and saturation strength; 0 = off")
    image_size: int = option(28, *between(8, 1024, "an integer"), "crop side, in training and serving")
    resize_size: int = option(0, f"0 or an integer in [image_size, {INT_MAX}]", lambda v: 0 <= v <= INT_MAX,
                              "shorter side before cropping; 0 = image_size")
    workers: int = option(0, *count(0), "data-loading processes; 0 = one per core", operational=True)
    cache_mb: int = option(4096, *count(0), "memory for decoded images, kept from the scan for every epoch "
                                               "(as many as fit; the rest are decoded each epoch); 0 = none",
                           operational=True)
    max_bad_image_fraction: float = option(0.01, *between(0, 1), "unreadable images (every image is decoded "
                                                                 "before training) are skipped and logged; "
                                                                 "above this share the job fails", operational=True)
    seed: int = option(0, *count(0, SEED_MAX), "epoch order, augmentation and initial weights")
    pretrained_weights: str = option("", "a file name (or empty)", lambda v: "/" not in v and v not in (".", ".."),
                                     "fine-tuning (resnet50): a file in the `pretrained` channel or the model "
                                     "dir; empty = from scratch")
    freeze_backbone_epochs: int = option(0, *count(0), "train only the new head for this many first epochs")
    checkpoint_every: int = option(1, *count(1), "epochs between checkpoints (and always on SIGTERM)",
                                   operational=True)
    deterministic: bool = flag(False, "bit-for-bit repeatable runs (slower on GPU)", operational=True)
    distributed_timeout: int = option(600, *count(5, kind="an integer number of seconds"),
                                      "several hosts or GPUs: seconds a process waits for the others to join, "
                                      "or in a step", operational=True)
    resume: str = option("auto", "auto or force", lambda v: v in RESUME_CHOICES,
                         "a checkpoint of another job (other hyperparameters or data) fails the job (auto) or is "
                         "continued with this job's values (force)", operational=True)
    progress_seconds: int = option(30, *count(0), "seconds between progress lines within an epoch (rank 0); "
                                                     "0 = off", operational=True)
    tensorboard: bool = flag(False, "TensorBoard scalars to /opt/ml/output/tensorboard (TensorBoardOutputConfig's "
                                    "LocalPath); also on whenever the job has a TensorBoardOutputConfig or that "
                                    "folder exists", operational=True)


FIELDS = {f.name: f for f in fields(Hyperparameters)}
# What a checkpoint's job and this one must agree on to be the same optimisation.
DEFINING = tuple(name for name, f in FIELDS.items() if not f.metadata["operational"])


def differences(saved: dict, hp: Hyperparameters) -> dict[str, tuple]:
    """{name: (saved value, this job's)} for the defining fields that differ. A field missing from
    `saved` (a checkpoint from an older image) had its default: new fields keep old behaviour."""
    return {name: (saved.get(name, FIELDS[name].default), getattr(hp, name)) for name in DEFINING
            if saved.get(name, FIELDS[name].default) != getattr(hp, name)}


def _shown_value(value) -> str:
    """repr(value), cut short: a 400-digit number would swamp the one paragraph."""
    try:
        shown = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        shown = "<a very long number>"
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _invalid(name: str, value) -> HyperparameterError:
    allowed = FIELDS[name].metadata["allowed"]
    if FIELDS[name].type is bool:
        allowed += " (any case: true, True, TRUE, ...; or 1 and 0)"
    return HyperparameterError(f"Hyperparameter {name}={_shown_value(value)} is not valid: it must be {allowed}.")


def _number(name: str, raw, kind: type):
    """int or float from a JSON number or its text ("3", "1e-05"); bools are not numbers."""
    value = raw
    if isinstance(raw, str):
        text = raw.strip()
        try:
            value = int(text) if kind is int and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise _invalid(name, raw) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(name, raw)
    if isinstance(value, float) and not math.isfinite(value):  # an int is finite however large (no float())
        raise _invalid(name, raw)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise _invalid(name, raw)
        return int(value)  # the field's bounds refuse the huge ones
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        raise _invalid(name, raw) from None


def coerce(name: str, value):
    """One value, as any client sends it, to the field's type (None: the field's default)."""
    kind = FIELDS[name].type
    if value is None or value in ("None", "null"):
        return FIELDS[name].default
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in BOOLEAN_SPELLINGS:
            return BOOLEAN_SPELLINGS[value.strip().lower()]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)  # "1", "0" (and a tuner's "1.0"), as the toolkit decodes them
        if not isinstance(value, bool):
            raise _invalid(name, value)
        return value
    if kind is str:
        if isinstance(value, (bool, list, dict)):
            raise _invalid(name, value)
        return str(value)
    return _number(name, value, kind)


def as_written(text: str) -> str:
    """A text field's value as SageMaker wrote it: unwrapped if it is a JSON string (SDK v3 and
    byoc-cloud JSON-encode every value), else verbatim, whatever JSON would make of it."""
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return decoded if isinstance(decoded, str) else text


def parse(raw: dict, written: dict | None = None) -> Hyperparameters:
    """raw: the values as sagemaker-training decoded them; written: hyperparameters.json as
    SageMaker wrote it (all strings), from which text fields take their value."""
    written = written or {}
    unknown = sorted(k for k in raw if k not in FIELDS and k not in SAGEMAKER_KEYS and not k.startswith("sagemaker_"))
    if unknown:
        raise HyperparameterError(
            f"Unknown hyperparameter(s) {', '.join(unknown)}. Allowed: {', '.join(FIELDS)}."
        )
    values = {}
    for name, given in raw.items():
        if name not in FIELDS:
            continue
        if FIELDS[name].type is str and isinstance(written.get(name), str):
            given = as_written(written[name])
        value = coerce(name, given)
        if not FIELDS[name].metadata["check"](value):
            raise _invalid(name, given)  # as sent: "1e30", not the 31-digit integer it was read as
        values[name] = value
    hp = Hyperparameters(**values)
    if hp.resize_size and hp.resize_size < hp.image_size:
        raise HyperparameterError(
            f"Hyperparameter resize_size={hp.resize_size} is smaller than image_size={hp.image_size}: "
            "it must be 0 or at least image_size."
        )
    if hp.freeze_backbone_epochs and not hp.pretrained_weights:
        raise HyperparameterError(
            "Hyperparameter freeze_backbone_epochs needs pretrained_weights: a random backbone is not worth freezing."
        )
    return hp


def _shown(default) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float):
        return f"{default:g}"
    return str(default) if default != "" else '""'


def markdown_table() -> str:
    """The README's table: one row per field, from the fields themselves."""
    rows = ["| name | default | allowed | meaning |", "|---|---|---|---|"]
    for f in FIELDS.values():
        meaning = f.metadata["meaning"] + ("; can change on resume" if f.metadata["operational"] else "")
        rows.append(f"| `{f.name}` | {_shown(f.default)} | {f.metadata['allowed']} | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
