"""Fine-tuning from pretrained weights kept in a file: nothing is downloaded at run time.

The file (a torchvision .pth state dict or .safetensors) goes in the
`pretrained` channel, or in the model dir. Its classifier head is dropped (the
number of classes differs); every other weight must fit the architecture.
"""
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from byoc import model_package
from byoc.models import HEADS
from byoc.training.errors import TrainingError

logger = logging.getLogger(__name__)
CHANNEL = "pretrained"


def find_weights(filename: str, channel_dirs: dict[str, str], model_dir: str) -> Path:
    places = [Path(channel_dirs[CHANNEL]) if CHANNEL in channel_dirs else None, Path(model_dir)]
    for place in filter(None, places):
        if (place / filename).is_file():
            return place / filename
    looked = ", ".join(str(p) for p in places if p)
    raise TrainingError(
        f"Pretrained weights {filename!r} were requested (pretrained_weights) but not found in {looked}. "
        f"Pass the file in the '{CHANNEL}' input channel, or leave pretrained_weights empty to train from scratch."
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no objects
    except Exception as error:
        raise TrainingError(f"Pretrained weights {path} could not be read as a state dict: "
                            f"{str(error) or type(error).__name__}") from None
    for key in ("state_dict", "model"):  # common wrappers around the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TrainingError(f"Pretrained weights {path} are not a state dict of tensors.")
    return state


def load_into(model: nn.Module, architecture: str, path: Path) -> None:
    head = HEADS.get(architecture)
    if head is None:
        raise TrainingError(f"Model {architecture} has no pretrained weights to fine-tune; "
                            f"pretrained_weights works with: {', '.join(sorted(HEADS))}.")
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(head)}
    # load_state_dict would cast integers into float weights and copy NaN: a backbone of garbage that
    # trains for hours before anyone sees it.
    expected = model.state_dict()
    for name, tensor in state.items():
        if name in expected and tensor.is_floating_point() != expected[name].is_floating_point():
            raise TrainingError(f"Pretrained weights {path}: tensor {name} is {tensor.dtype}; {architecture} "
                                f"needs {expected[name].dtype} there.")
    if (name := model_package.nonfinite(state)) is not None:
        raise TrainingError(f"Pretrained weights {path}: tensor {name} holds NaN or infinite values.")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # tensors of the wrong shape
        first = str(error).split("\n\t")[1:2] or [str(error)]
        raise TrainingError(f"Pretrained weights {path} do not fit {architecture}: {first[0].strip()}") from None
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise TrainingError(
            f"Pretrained weights {path} do not fit {architecture}: {len(missing)} weights missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})."
        )
    logger.info("loaded pretrained weights from %s (%d tensors; head %s is new)", path, len(state), head)


def set_backbone_frozen(model: nn.Module, architecture: str, frozen: bool) -> None:
    """Freeze everything but the head (its gradients stay off, so the optimiser skips it)."""
    head = HEADS[architecture]
    for name, parameter in model.named_parameters():
        parameter.requires_grad = not frozen or name.startswith(head)
