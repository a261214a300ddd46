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
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    image_size: int = 28  # crop side; training crops and serving uses the same
    resize_size: int = 0  # shorter side before cropping; 0 means image_size
    workers: int = 0  # data-loading processes; 0 means one per core
    seed: int = 0


LIMITS = {
    "model": ("one of " + ", ".join(sorted(ARCHITECTURES)), lambda v: v in ARCHITECTURES),
    "epochs": ("an integer >= 1", lambda v: v >= 1),
    "batch_size": ("an integer >= 1", lambda v: v >= 1),
    "lr": ("a number > 0", lambda v: v > 0),
    "momentum": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "weight_decay": ("a number >= 0", lambda v: v >= 0),
    "image_size": ("an integer between 8 and 1024", lambda v: 8 <= v <= 1024),
    "resize_size": ("0 or an integer >= image_size", lambda v: v >= 0),
    "workers": ("an integer >= 0", lambda v: v >= 0),
    "seed": ("an integer >= 0", lambda v: v >= 0),
}


def _coerce(name: str, kind: type, value):
    allowed = LIMITS[name][0]
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
    return hp
