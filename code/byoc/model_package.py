"""The model directory (/opt/ml/model): exactly what serving needs, nothing pickled.

model.safetensors  the weights (safetensors: loading runs no code)
model.json         architecture and its arguments, class names, preprocessing (byoc.contract.ModelSpec)
"""
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from byoc.contract import SPEC_FILE, WEIGHTS_FILE, ModelPackageError, ModelSpec, load_spec
from byoc.models import build_model


def build(spec: ModelSpec) -> nn.Module:
    """The spec's architecture with random weights."""
    return build_model(spec.architecture, len(spec.class_names), **spec.architecture_args)


def save(model: nn.Module, spec: ModelSpec, model_dir: str | Path) -> None:
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, model_dir / WEIGHTS_FILE)
    (model_dir / SPEC_FILE).write_text(spec.document())
    # Readable by all: the serving image runs its model server as an unprivileged user.
    for name in (WEIGHTS_FILE, SPEC_FILE):
        os.chmod(model_dir / name, 0o644)


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model from its spec and weights, in eval mode on `device`."""
    spec = load_spec(model_dir)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelPackageError(f"{weights} is missing")
    model = build(spec)
    model.load_state_dict(load_file(weights, device=str(device)))
    return model.to(device).eval(), spec
