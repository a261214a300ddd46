"""The model directory (/opt/ml/model): exactly what serving needs, nothing pickled.

model.safetensors  the weights (safetensors: loading runs no code)
model.json         architecture and its arguments, class names, preprocessing
"""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from byoc.models import build_model
from byoc.preprocessing import Preprocessing

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "model.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    class_names: list[str]
    preprocessing: Preprocessing
    architecture_args: dict = field(default_factory=dict)

    def build(self) -> nn.Module:
        return build_model(self.architecture, len(self.class_names), **self.architecture_args)


class ModelPackageError(Exception):
    """The model directory is missing, incomplete or not one of ours."""


def save(model: nn.Module, spec: ModelSpec, model_dir: str | Path) -> None:
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, model_dir / WEIGHTS_FILE)
    document = {"format_version": FORMAT_VERSION, **asdict(spec)}
    (model_dir / SPEC_FILE).write_text(json.dumps(document, indent=2) + "\n")


def load_spec(model_dir: str | Path) -> ModelSpec:
    path = Path(model_dir) / SPEC_FILE
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelPackageError(f"{path} is missing: is {model_dir} a model trained by this kit?") from None
    except json.JSONDecodeError as error:
        raise ModelPackageError(f"{path} is not valid JSON: {error}") from None
    if document.get("format_version") != FORMAT_VERSION:
        raise ModelPackageError(
            f"{path} has format_version {document.get('format_version')!r}; this code reads {FORMAT_VERSION}"
        )
    try:
        return ModelSpec(
            architecture=document["architecture"],
            class_names=list(document["class_names"]),
            preprocessing=Preprocessing(**document["preprocessing"]),
            architecture_args=dict(document.get("architecture_args", {})),
        )
    except (KeyError, TypeError) as error:
        raise ModelPackageError(f"{path} lacks a field or has a wrong one: {error}") from None


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model from its spec and weights, in eval mode on `device`."""
    spec = load_spec(model_dir)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelPackageError(f"{weights} is missing")
    model = spec.build()
    model.load_state_dict(load_file(weights, device=str(device)))
    return model.to(device).eval(), spec
