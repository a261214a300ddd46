"""The hyperparameters a job accepts, with their types, defaults and limits.

SageMaker writes every value as a JSON-encoded string; sagemaker-training
decodes them, so "3" arrives as 3 and "small_cnn" as the string itself.
Anything unknown, mistyped or out of range stops the job before training.
"""
from dataclasses import dataclass, fields

from byoc.models import ARCHITECTURES
from byoc.training.errors import HyperparameterError


@dataclass(frozen=True)
class Hyperparameters:
    model: str = "small_cnn"
    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd (Nesterov momentum) or adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.5  # linear warmup, then cosine decay to zero
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # 0 = off
    cutmix_alpha: float = 0.0  # 0 = off
    clip_grad_norm: float = 0.0  # 0 = off
    early_stopping_patience: int = 0  # epochs without a better validation accuracy; 0 = off
    amp: bool = True  # mixed precision on GPUs: bf16 where supported, else fp16 with a grad scaler
    channels_last: bool = True  # faster convolutions on CPUs (oneDNN) and GPUs
    compile: bool = False  # torch.compile the model
    # augmentation (albumentations)
    hflip: bool = True
    rotation: float = 0.0  # maximum degrees either way
    crop_padding: int = -1  # pad-and-crop for small images, px a side; -1 = image_size // 8
    crop_scale_min: float = 0.25  # random-resized-crop's smallest area for large images
    cutout_size: int = 0  # side of one CoarseDropout hole in px; 0 = off
    color_jitter: float = 0.0  # brightness, contrast and saturation strength; 0 = off
    image_size: int = 28  # crop side; training crops and serving uses the same
    resize_size: int = 0  # shorter side before cropping; 0 means image_size
    workers: int = 0  # data-loading processes; 0 means one per core
    cache_mb: int = 4096  # decode all images into memory once when they fit in this; 0 = decode every epoch
    max_bad_image_fraction: float = 0.01  # unreadable images are skipped; above this share the job fails
    seed: int = 0
    pretrained_weights: str = ""  # a file in the 'pretrained' channel (or the model dir); "" = from scratch
    freeze_backbone_epochs: int = 0  # train only the new head for this many first epochs
    checkpoint_every: int = 1  # epochs between checkpoints (and always on SIGTERM)
    deterministic: bool = False  # bit-for-bit repeatable runs (slower on GPU)
    # several hosts or GPUs: how long a process waits for the others (to join, or in a step)
    distributed_timeout: int = 600


LIMITS = {
    "model": ("one of " + ", ".join(sorted(ARCHITECTURES)), lambda v: v in ARCHITECTURES),
    "epochs": ("an integer >= 1", lambda v: v >= 1),
    "batch_size": ("an integer >= 1", lambda v: v >= 1),
    "optimizer": ("sgd or adamw", lambda v: v in ("sgd", "adamw")),
    "lr": ("a number > 0", lambda v: v > 0),
    "momentum": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "weight_decay": ("a number >= 0", lambda v: v >= 0),
    "warmup_epochs": ("a number >= 0", lambda v: v >= 0),
    "label_smoothing": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "mixup_alpha": ("a number >= 0", lambda v: v >= 0),
    "cutmix_alpha": ("a number >= 0", lambda v: v >= 0),
    "clip_grad_norm": ("a number >= 0", lambda v: v >= 0),
    "early_stopping_patience": ("an integer >= 0", lambda v: v >= 0),
    "amp": ("true or false", lambda v: True),
    "channels_last": ("true or false", lambda v: True),
    "compile": ("true or false", lambda v: True),
    "hflip": ("true or false", lambda v: True),
    "rotation": ("a number of degrees in [0, 180]", lambda v: 0 <= v <= 180),
    "crop_padding": ("-1 or an integer >= 0", lambda v: v >= -1),
    "crop_scale_min": ("a number in (0, 1]", lambda v: 0 < v <= 1),
    "cutout_size": ("an integer >= 0", lambda v: v >= 0),
    "color_jitter": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "image_size": ("an integer between 8 and 1024", lambda v: 8 <= v <= 1024),
    "resize_size": ("0 or an integer >= image_size", lambda v: v >= 0),
    "workers": ("an integer >= 0", lambda v: v >= 0),
    "cache_mb": ("an integer >= 0", lambda v: v >= 0),
    "max_bad_image_fraction": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "seed": ("an integer >= 0", lambda v: v >= 0),
    "pretrained_weights": ("a file name (or empty)", lambda v: "/" not in v and v not in (".", "..")),
    "freeze_backbone_epochs": ("an integer >= 0", lambda v: v >= 0),
    "checkpoint_every": ("an integer >= 1", lambda v: v >= 1),
    "deterministic": ("true or false", lambda v: True),
    "distributed_timeout": ("an integer number of seconds >= 5", lambda v: v >= 5),
}


def _coerce(name: str, kind: type, value):
    allowed = LIMITS[name][0]
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise HyperparameterError(f"Hyperparameter {name}={value!r} is not valid: it must be {allowed}.")
    # bool is an int subclass, and "true" decodes to True: neither is a number here.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise HyperparameterError(f"Hyperparameter {name}={value!r} is not valid: it must be {allowed}.")
    if kind is str:
        return str(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise HyperparameterError(f"Hyperparameter {name}={value!r} is not valid: it must be {allowed}.")
    return kind(value)


def parse(raw: dict) -> Hyperparameters:
    known = {f.name: f for f in fields(Hyperparameters)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise HyperparameterError(
            f"Unknown hyperparameter(s) {', '.join(unknown)}. Allowed: {', '.join(known)}."
        )
    values = {}
    for name, value in raw.items():
        value = _coerce(name, known[name].type, value)
        allowed, ok = LIMITS[name]
        if not ok(value):
            raise HyperparameterError(f"Hyperparameter {name}={value!r} is not valid: it must be {allowed}.")
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
