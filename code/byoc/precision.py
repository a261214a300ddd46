"""Reduced-precision inference: where it is native, how close it stays to fp32, and the choice.

bf16 halves the bytes the model moves and runs on the CPU's bf16 instructions (AVX512_BF16 or
AMX: AMD Zen 4, Intel Sapphire Rapids, i.e. m7a/c7a and m7i/c7i) or a GPU's tensor cores (from
Ampere on, plus T4/V100 by emulation: not native there). It may change a prediction: the training
job measures how often, as the top-1 agreement between the bf16 and the fp32 model on the
validation set (else the test set), and records it in model.json; serving uses bf16 only where it
is native and that agreement clears the bar (BYOC_PRECISION=auto), or when asked to (bf16).

On CPUs without native bf16 (AVX2, AVX-512 and VNNI hosts: c5/m5/c6i and the like) the fast path
is int8 (byoc.quantized), measured and guarded the same way; `auto` prefers bf16 where it is native.

Both sides run the model the same way (run(); on the CPU in graph mode, byoc.cpu_graph), so the
agreement measured is the one served.
"""
import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from byoc import cpu_graph, quantized
from byoc.contract import DEFAULT_MIN_AGREEMENT_PERCENT, PRECISION_CHOICES

CHOICES = PRECISION_CHOICES
DEFAULT_MIN_AGREEMENT = DEFAULT_MIN_AGREEMENT_PERCENT / 100
CPU_FLAGS = Path("/proc/cpuinfo")
INT8 = torch.qint8  # the int8 path's name among the dtypes: weights and activations in int8, on the CPU
INT8_AGREEMENT_IMAGES = 5000  # int8 runs on the CPU even in a GPU job: its measurement is capped
NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", INT8: "int8"}


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
    """A model as run() runs it: channels_last, in `dtype` (int8: quantized, fp32 in and out); with
    `graph`, traced at its first call and fused by oneDNN Graph (byoc.cpu_graph; CPU only)."""
    module: nn.Module
    dtype: torch.dtype
    graph: bool = False
    device: torch.device = torch.device("cpu")  # where its inputs go


def prepare(model: nn.Module, dtype: torch.dtype, graph: bool = False, int8: dict | None = None,
            crop: int = 224) -> Runnable:
    """The model as run() runs it in `dtype`: channels_last (oneDNN and cuDNN convolutions are faster
    on NHWC); for bf16 a copy with bf16 weights, for int8 one quantized with model.json's `int8`
    record (its activation ranges; `crop`: the input side), so the fp32 model stays as it is.
    `graph` applies on the CPU only (GPUs run cuDNN's kernels eagerly)."""
    if dtype == INT8:
        module = quantized.build(model, int8["ranges"], crop).to(memory_format=torch.channels_last)
        return Runnable(module, dtype, graph)
    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    model = model.to(memory_format=torch.channels_last).eval()
    device = next(model.parameters()).device
    return Runnable(model, dtype, graph and device.type == "cpu", device)


@torch.inference_mode()
def run(model: Runnable, batch: torch.Tensor) -> torch.Tensor:
    """Logits in fp32: inputs cast to the model's dtype (int8 models take fp32), channels_last."""
    dtype = torch.float32 if model.dtype == INT8 else model.dtype
    batch = batch.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
    if model.graph and not isinstance(model.module, torch.jit.ScriptModule):
        traced = cpu_graph.trace(model.module, batch[:cpu_graph.CHUNK])
        model.module, model.graph = (traced, True) if traced is not None else (model.module, False)
    return (cpu_graph.run(model.module, batch) if model.graph else model.module(batch)).float()


def agreement(model: nn.Module, loader, device: torch.device, reduce=lambda t: t, stop=None,
              low: Runnable | None = None, limit: int | None = None) -> dict:
    """`low` (default: bf16 in graph mode, as the CPU serves it) against fp32 on a labelled loader:
    top-1 agreement, both accuracies, the image count; at most `limit` images. `reduce` sums the
    counts over the ranks that each evaluated a shard; a stop request (stop.requested_here) ends
    the pass early, as in byoc.training.engine.evaluate."""
    model.eval()
    full_model, low = prepare(model, torch.float32), low or prepare(model, torch.bfloat16, graph=True)
    counts = torch.zeros(4, dtype=torch.float64)  # images, agreeing, fp32 correct, low correct
    for images, labels in loader:
        if (stop is not None and stop.requested_here) or (limit is not None and counts[0] >= limit):
            break
        if limit is not None:
            images, labels = images[:int(limit - counts[0])], labels[:int(limit - counts[0])]
        images, labels = images.to(device), labels.to(device)
        full, half = run(full_model, images).argmax(1), run(low, images.to(low.device)).argmax(1).to(device)
        counts += torch.tensor([len(labels), (full == half).sum().item(), (full == labels).sum().item(),
                                (half == labels).sum().item()], dtype=torch.float64)
    images, agree, fp32_correct, low_correct = reduce(counts).tolist()
    seen = max(images, 1)
    return {"dtype": NAMES[low.dtype], "images": int(images), "agreement": agree / seen,
            "fp32_accuracy": fp32_correct / seen, "accuracy": low_correct / seen, "device": low.device.type}


@dataclass(frozen=True)
class Choice:
    dtype: torch.dtype
    reason: str


def choose(setting: str, device: torch.device, measured: dict, min_agreement: float,
           int8: dict | None = None) -> Choice:
    """The precision to serve in: `measured` and `int8` are model.json's bf16 and int8 records
    (empty for models trained before the kit measured them)."""
    int8 = int8 or {}
    if setting == "fp32":
        return Choice(torch.float32, "BYOC_PRECISION=fp32")
    if setting == "bf16":
        return Choice(torch.bfloat16, "BYOC_PRECISION=bf16" + ("" if native_bf16(device) else
                                                               f" (not native on this {device.type}: slower)"))
    if setting == "int8":
        if device.type != "cpu":
            return Choice(torch.float32, f"fp32: BYOC_PRECISION=int8 runs on the CPU only, not this {device.type}")
        if not int8:
            return Choice(torch.float32, "fp32: BYOC_PRECISION=int8 needs the activation ranges a training job "
                                         "records in model.json (int8), and this model has none")
        return Choice(INT8, f"BYOC_PRECISION=int8 (it agreed with fp32 on {_share(int8)})")
    bf16 = (_refusal("bf16", measured, min_agreement) if native_bf16(device) else
            f"this {device.type} has no native bf16")
    if bf16 is None:
        return Choice(torch.bfloat16, f"bf16: native on this {device.type}, and it agreed with fp32 on "
                                      f"{_share(measured)}")
    if device.type != "cpu":
        return Choice(torch.float32, f"fp32: {bf16}")
    if (refused := _refusal("int8", int8, min_agreement)) is not None:
        return Choice(torch.float32, f"fp32: {bf16}; {refused}")
    return Choice(INT8, f"int8: {bf16}; int8 agreed with fp32 on {_share(int8)}")


def _share(record: dict) -> str:
    if not record["images"]:
        return "no images: not measured"
    return f"{record['agreement']:.2%} of {record['images']} images"


def _refusal(name: str, record: dict, min_agreement: float) -> str | None:
    """Why the guard refuses `name` for this model; None if its measured agreement clears the bar."""
    if "agreement" not in record:
        return (f"model.json has no measured {name} agreement (trained before it was measured); "
                f"BYOC_PRECISION={name} serves in {name} anyway" + (" where it can" if name == "int8" else ""))
    if record["agreement"] < min_agreement:
        return (f"{name} agreed with fp32 on {_share(record)}, below BYOC_PRECISION_MIN_AGREEMENT "
                f"{min_agreement:.2%}")
    return None
