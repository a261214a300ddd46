"""Reduced-precision inference: where it is native, how close it stays to fp32, and the choice.

bf16 halves the bytes the model moves and runs on the CPU's bf16 instructions (AVX512_BF16 or
AMX: AMD Zen 4, Intel Sapphire Rapids, i.e. m7a/c7a and m7i/c7i) or a GPU's tensor cores (from
Ampere on, plus T4/V100 by emulation: not native there). It may change a prediction: the training
job measures how often, as the top-1 agreement between the bf16 and the fp32 model on the
validation set (else the test set), and records it in model.json; serving uses bf16 only where it
is native and that agreement clears the bar (BYOC_PRECISION=auto), or when asked to (bf16).

Both sides run the model the same way (run(); on the CPU in graph mode, byoc.cpu_graph), so the
agreement measured is the one served.
"""
import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from byoc import cpu_graph
from byoc.contract import DEFAULT_MIN_AGREEMENT_PERCENT, PRECISION_CHOICES

CHOICES = PRECISION_CHOICES
DEFAULT_MIN_AGREEMENT = DEFAULT_MIN_AGREEMENT_PERCENT / 100
CPU_FLAGS = Path("/proc/cpuinfo")


def cpu_has_bf16() -> bool:
    """The CPU's own bf16 instructions (not oneDNN's emulation on plain AVX-512)."""
    try:
        flags = next((line for line in CPU_FLAGS.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8  # Ampere and later
    return cpu_has_bf16() and torch.backends.mkldnn.is_available()


@dataclass
class Runnable:
    """A model as run() runs it: channels_last, in `dtype`; with `graph`, traced at its first call
    and fused by oneDNN Graph (byoc.cpu_graph; CPU only)."""
    module: nn.Module
    dtype: torch.dtype
    graph: bool = False


def prepare(model: nn.Module, dtype: torch.dtype, graph: bool = False) -> Runnable:
    """The model as run() runs it in `dtype`: channels_last (oneDNN and cuDNN convolutions are faster
    on NHWC); for bf16 a copy with bf16 weights, so the fp32 model stays as it is. `graph` applies on
    the CPU only (GPUs run cuDNN's kernels eagerly)."""
    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    model = model.to(memory_format=torch.channels_last).eval()
    return Runnable(model, dtype, graph and next(model.parameters()).device.type == "cpu")


@torch.inference_mode()
def run(model: Runnable, batch: torch.Tensor) -> torch.Tensor:
    """Logits in fp32: inputs cast to the model's dtype, channels_last."""
    batch = batch.to(dtype=model.dtype).contiguous(memory_format=torch.channels_last)
    if model.graph and not isinstance(model.module, torch.jit.ScriptModule):
        traced = cpu_graph.trace(model.module, batch[:cpu_graph.CHUNK])
        model.module, model.graph = (traced, True) if traced is not None else (model.module, False)
    return (cpu_graph.run(model.module, batch) if model.graph else model.module(batch)).float()


def agreement(model: nn.Module, loader, device: torch.device, reduce=lambda t: t, stop=None) -> dict:
    """bf16 against fp32 on a labelled loader: top-1 agreement, both accuracies, the image count.
    `reduce` sums the counts over the ranks that each evaluated a shard; a stop request
    (stop.requested_here) ends the pass early, as in byoc.training.engine.evaluate."""
    model.eval()
    # bf16 as the CPU serves it by default (graph mode); fp32 as trained, the reference.
    full_model, low = prepare(model, torch.float32), prepare(model, torch.bfloat16, graph=True)
    counts = torch.zeros(4, dtype=torch.float64)  # images, agreeing, fp32 correct, bf16 correct
    for images, labels in loader:
        if stop is not None and stop.requested_here:
            break
        images, labels = images.to(device), labels.to(device)
        full, half = run(full_model, images).argmax(1), run(low, images).argmax(1)
        counts += torch.tensor([len(labels), (full == half).sum().item(), (full == labels).sum().item(),
                                (half == labels).sum().item()], dtype=torch.float64)
    images, agree, fp32_correct, bf16_correct = reduce(counts).tolist()
    seen = max(images, 1)
    return {"dtype": "bf16", "images": int(images), "agreement": agree / seen, "fp32_accuracy": fp32_correct / seen,
            "accuracy": bf16_correct / seen, "device": device.type}


@dataclass(frozen=True)
class Choice:
    dtype: torch.dtype
    reason: str


def choose(setting: str, device: torch.device, measured: dict, min_agreement: float) -> Choice:
    """The precision to serve in: `measured` is model.json's record (empty for models trained before
    the kit measured it)."""
    if setting == "fp32":
        return Choice(torch.float32, "BYOC_PRECISION=fp32")
    if setting == "bf16":
        return Choice(torch.bfloat16, "BYOC_PRECISION=bf16" + ("" if native_bf16(device) else
                                                               f" (not native on this {device.type}: slower)"))
    if not native_bf16(device):
        return Choice(torch.float32, f"fp32: this {device.type} has no native bf16")
    if "agreement" not in measured:
        return Choice(torch.float32, "fp32: model.json has no measured bf16 agreement (trained before it was "
                                     "measured); BYOC_PRECISION=bf16 serves in bf16 anyway")
    if measured["agreement"] < min_agreement:
        return Choice(torch.float32, f"fp32: bf16 agreed with fp32 on {measured['agreement']:.2%} of "
                                     f"{measured['images']} images, below BYOC_PRECISION_MIN_AGREEMENT "
                                     f"{min_agreement:.2%}")
    return Choice(torch.bfloat16, f"bf16: native on this {device.type}, and it agreed with fp32 on "
                                  f"{measured['agreement']:.2%} of {measured['images']} images")
