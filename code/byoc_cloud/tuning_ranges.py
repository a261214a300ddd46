"""Hyperparameter ranges for a tuning job, from --range flags or a JSON/YAML file, checked against
the training image's own table (byoc.training.hyperparameters) before any AWS call.

    --range lr=0.001:0.1:log           a number field: a continuous range (int fields: an integer range)
    --range epochs=5:20                 scaling: auto (default), linear, log, reverse-log
    --range optimizer=sgd,adamw        any field: categorical values
    --range hflip=true,false

A file holds the same as a mapping: {"lr": {"min": 0.001, "max": 0.1, "scaling": "log"},
"optimizer": ["sgd", "adamw"], "hflip": [true, false]}.

SageMaker hands each trial its tuned values as plain strings: a categorical value exactly as
listed, numbers as their text. Every value is checked here the way the image will read it, and
booleans are sent as "true"/"false", which the image reads in any case.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

from byoc.training import hyperparameters as table
from byoc.training.errors import HyperparameterError
from byoc_cloud.calls import LaunchError

SCALING = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic", "logarithmic": "Logarithmic",
           "reverse-log": "ReverseLogarithmic", "reverselogarithmic": "ReverseLogarithmic"}
MAX_TUNED = 30  # ParameterRanges: at most 30 hyperparameters in all ranges together
MAX_VALUES = 30  # values of one categorical range
MAX_HYPERPARAMETERS = 100  # static plus tuned


@dataclass(frozen=True)
class NumericRange:
    name: str
    low: float
    high: float
    scaling: str  # SageMaker's ScalingType
    integer: bool

    def request(self) -> dict:
        text = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        return {"Name": self.name, "MinValue": text(self.low), "MaxValue": text(self.high),
                "ScalingType": self.scaling}


@dataclass(frozen=True)
class CategoricalRange:
    name: str
    values: tuple[str, ...]

    def request(self) -> dict:
        return {"Name": self.name, "Values": list(self.values)}


def _field(name: str):
    if name not in table.FIELDS:
        raise LaunchError(f"range {name!r}: not a hyperparameter of the training image; "
                          f"tunable: {', '.join(table.FIELDS)}")
    return table.FIELDS[name]


def _checked(name: str, value):
    """value read as the image reads it (any spelling), within the field's limits."""
    try:
        coerced = table.coerce(name, value)
    except HyperparameterError as error:
        raise LaunchError(f"range {name!r}: {error}") from None
    if not table.FIELDS[name].metadata["check"](coerced):
        raise LaunchError(f"range {name!r}: {value!r} is outside what the image accepts: "
                          f"{table.FIELDS[name].metadata['allowed']}")
    return coerced


def numeric(name: str, low, high, scaling: str = "auto") -> NumericRange:
    field = _field(name)
    if field.type not in (int, float):
        raise LaunchError(f"range {name!r}: {name} is {field.metadata['allowed']}; give its values (a,b,...)")
    integer = field.type is int
    for end, value in (("low", low), ("high", high)):
        # The image reads None/null/"" as "the default"; as a range's end that would quietly become one.
        if value is None or str(value).strip() in ("", "None", "null"):
            raise LaunchError(f"range {name!r}: the {end} end must be a number, not {value!r}")
    low, high = _checked(name, low), _checked(name, high)
    if not low < high:
        raise LaunchError(f"range {name!r}: the low end {low:g} must be below the high end {high:g}")
    kind = SCALING.get(str(scaling).lower())
    if kind is None:
        raise LaunchError(f"range {name!r}: scaling {scaling!r} is not one of auto, linear, log, reverse-log")
    if kind == "Logarithmic" and low <= 0:
        raise LaunchError(f"range {name!r}: log scaling needs a low end above 0, not {low:g}")
    if kind == "ReverseLogarithmic" and (integer or not 0 <= low < high < 1):
        raise LaunchError(f"range {name!r}: reverse-log scaling is for number fields within [0, 1)")
    return NumericRange(name, low, high, kind, integer)


def categorical(name: str, values: list) -> CategoricalRange:
    field = _field(name)
    if not 2 <= len(values) <= MAX_VALUES:
        raise LaunchError(f"range {name!r}: give 2 to {MAX_VALUES} values (a fixed value is a --hp)")
    coerced = [_checked(name, value) for value in values]
    if len(set(coerced)) != len(coerced):
        raise LaunchError(f"range {name!r}: a value is listed twice: {values}")
    # Booleans as JSON's true/false; anything else as written (SageMaker passes it on as text).
    texts = [json.dumps(c) if field.type is bool else str(v).strip() for c, v in zip(coerced, values)]
    return CategoricalRange(name, tuple(texts))


def from_flag(flag: str):
    """'lr=0.001:0.1:log' or 'optimizer=sgd,adamw'."""
    name, sep, spec = flag.partition("=")
    if not sep or not name or not spec:
        raise LaunchError(f"range {flag!r}: expected NAME=LOW:HIGH[:SCALING] or NAME=VALUE,VALUE,...")
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise LaunchError(f"range {flag!r}: expected NAME=LOW:HIGH[:SCALING]")
        return numeric(name, parts[0], parts[1], *parts[2:])
    return categorical(name, spec.split(","))


def _load(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LaunchError(f"--ranges-file {path}: cannot read it ({error})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # PyYAML, in the development environment; JSON files need nothing
        except ImportError:
            raise LaunchError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise LaunchError(f"{path}: not valid YAML: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise LaunchError(f"{path}: not valid JSON: {error}") from None


def from_file(path: Path) -> list:
    spec = _load(Path(path))
    if not isinstance(spec, dict):
        raise LaunchError(f"{path}: expected a mapping of hyperparameter names to ranges")
    ranges = []
    for name, entry in spec.items():
        if isinstance(entry, list):
            ranges.append(categorical(name, entry))
        elif isinstance(entry, dict) and {"min", "max"} <= entry.keys() <= {"min", "max", "scaling"}:
            ranges.append(numeric(name, entry["min"], entry["max"], entry.get("scaling", "auto")))
        else:
            raise LaunchError(f"{path}: range {name!r} must be a list of values or "
                              '{"min": ..., "max": ..., "scaling": ...}')
    return ranges


def parameter_ranges(ranges: list, static: dict) -> dict:
    """SageMaker's ParameterRanges, after the checks that need all ranges at once."""
    names = [r.name for r in ranges]
    if not ranges:
        raise LaunchError("a tuning job needs at least one --range (or a --ranges-file)")
    if len(set(names)) != len(names):
        raise LaunchError(f"a hyperparameter has two ranges: {sorted(n for n in names if names.count(n) > 1)[0]}")
    if overlap := sorted(set(names) & set(static)):
        raise LaunchError(f"{', '.join(overlap)}: both a --hp and a --range; a tuned value cannot also be fixed")
    if len(ranges) > MAX_TUNED or len(ranges) + len(static) > MAX_HYPERPARAMETERS:
        raise LaunchError(f"at most {MAX_TUNED} tuned and {MAX_HYPERPARAMETERS} hyperparameters in all")
    out = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [], "CategoricalParameterRanges": []}
    for r in ranges:
        key = "CategoricalParameterRanges" if isinstance(r, CategoricalRange) else \
            "IntegerParameterRanges" if r.integer else "ContinuousParameterRanges"
        out[key].append(r.request())
    return {key: value for key, value in out.items() if value}


def grid_size(ranges: list) -> int:
    """Grid search: every combination of the categorical values (the only ranges it takes)."""
    if numeric_names := [r.name for r in ranges if isinstance(r, NumericRange)]:
        raise LaunchError(f"grid search takes categorical ranges only; {', '.join(numeric_names)} "
                          "is a LOW:HIGH range: list its values instead")
    return math.prod(len(r.values) for r in ranges)
