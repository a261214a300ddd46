"""The model directory (/opt/ml/model): exactly what serving needs, nothing pickled.

model.safetensors  the weights (safetensors: loading runs no code)
model.json         architecture and its arguments, class names, preprocessing (byoc.contract.ModelSpec)

`python -m byoc.model_package DIR` checks a package the way `load` does and prints the one-line
reason it cannot serve (exit 1): a check before an upload. The serving image's `serve` checks
what needs no torch itself, and its workers the rest as they load (byoc.serving.handler).
"""
import os
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from byoc.contract import SPEC_FILE, WEIGHTS_FILE, ModelPackageError, ModelSpec, load_spec, weights_file
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
    """Rebuild the model from its spec and weights, in eval mode on `device`. The weights are checked
    against the model as built (check's meta-device build would cost a worker's start ~0.8 s more)."""
    spec = load_spec(model_dir)
    weights = weights_file(model_dir)
    model = _built(spec, model_dir)
    _fits(weights, model.state_dict(), spec)
    model.load_state_dict(_finite(weights, load_file(weights, device=str(device))))
    return model.to(device).eval(), spec


def check(model_dir: str | Path) -> tuple[ModelSpec, Path]:
    """model.json, and model.safetensors's header against the architecture model.json names, built on
    the meta device (no memory: architecture_args that would build a huge model are refused, not
    allocated). For a package not yet loaded: a multi-model load, `python -m byoc.model_package`."""
    spec = load_spec(model_dir)
    weights = weights_file(model_dir)
    with torch.device("meta"):
        expected = _built(spec, model_dir).state_dict()
    _fits(weights, expected, spec)
    return spec, weights


def _built(spec: ModelSpec, model_dir: str | Path) -> nn.Module:
    try:
        return build(spec)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ModelPackageError(f"{Path(model_dir) / SPEC_FILE}: architecture_args {spec.architecture_args!r} do "
                                f"not build {spec.architecture}: {str(error).splitlines()[0][:200]}") from None


def _fits(weights: Path, expected: dict[str, torch.Tensor], spec: ModelSpec) -> None:
    """Every tensor of the safetensors header against `expected`, by name, shape and kind of dtype. A
    ModelPackageError names the file and what is wrong; torch's own errors come far from the cause
    (a class count that differs from the head's is a size mismatch in layer 9)."""
    try:
        with safe_open(weights, framework="pt") as tensors:
            found = {name: (tensors.get_slice(name).get_shape(), tensors.get_slice(name).get_dtype())
                     for name in tensors.keys()}
    except Exception as error:  # whatever the safetensors parser says about a damaged file
        raise ModelPackageError(f"{weights} is not a safetensors file: {str(error)[:200]}") from None
    what = f"{spec.architecture} with {len(spec.class_names)} classes (model.json)"
    # BatchNorm's step counter is optional in a state dict (torch fills it in); nothing else is.
    missing = [n for n in expected if n not in found and not n.endswith("num_batches_tracked")]
    unexpected = [n for n in found if n not in expected]
    if missing or unexpected:
        raise ModelPackageError(f"{weights} does not hold the weights of {what}: {len(missing)} tensors missing "
                                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    for name, (shape, dtype) in found.items():
        want = expected[name]
        if list(shape) != list(want.shape):
            raise ModelPackageError(f"{weights}: tensor {name} has shape {list(shape)}; {what} needs "
                                    f"{list(want.shape)}")
        if dtype.startswith(("F", "BF")) != want.is_floating_point():
            raise ModelPackageError(f"{weights}: tensor {name} is {dtype}; {what} needs {want.dtype} there")


def nonfinite(state: dict[str, torch.Tensor]) -> str | None:
    """The first tensor holding NaN or infinity (a diverged run, a bad export), or None."""
    return next((name for name, tensor in state.items()
                 if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)


def _finite(weights: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NaN or infinite weights would answer NaN probabilities."""
    if (name := nonfinite(state)) is not None:
        raise ModelPackageError(f"{weights}: tensor {name} holds NaN or infinite values")
    return state


def check_all(model_dir: str | Path) -> ModelSpec:
    """check, and the weights' values too (they are read)."""
    spec, weights = check(model_dir)
    _finite(weights, load_file(weights))
    return spec


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m byoc.model_package MODEL_DIR")
    try:
        spec = check_all(sys.argv[1])
    except ModelPackageError as error:
        sys.exit(str(error))
    print(f"{sys.argv[1]}: {spec.architecture}, {len(spec.class_names)} classes")


if __name__ == "__main__":
    main()
