"""int8 inference on the CPU: the fast path of hosts without native bf16 (AVX2, AVX-512, VNNI).

The model is quantized after training with torch's FX graph mode: weights per output channel
(from the weights themselves), each activation per tensor from the range it took on calibration
images. Those ranges are all the calibration leaves, so the training job records them in
model.json beside the agreement it measured, and serving rebuilds the very same int8 model from
the fp32 weights and the ranges (no pickled or TorchScript model in the package). On ResNet-50
at batch 5-8 int8 runs about twice as fast as fp32 in graph mode on an AVX2 CPU (BENCHMARKS.md).

Activations use 7 of their 8 bits (0-127): on CPUs without VNNI, FBGEMM adds pairs of
u8 x s8 products in 16 bits, which full-range activations can overflow; the ranges are recorded
once and served on whatever CPU the endpoint gets, so they suit every one of them.
"""
import copy
import warnings
from collections.abc import Iterable

import torch
from torch import nn
from torch.ao.quantization import QConfig, default_per_channel_weight_observer, get_default_qconfig_mapping
from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

ENGINE = "x86"  # torch's CPU backend: FBGEMM or oneDNN per operator
CALIBRATION_IMAGES = 512  # activation ranges settle within a few hundred images


class QuantizationError(Exception):
    """The model cannot be quantized, or the recorded ranges do not fit it."""


def _mapping(model: nn.Module, observer):
    """Every layer in int8 but the first convolution and the last linear layer: those two cause many
    of the predictions int8 changes (the demo model's agreement with fp32: 99.26 % with them in
    int8, 99.64 % without) for a few percent of the work."""
    activation = observer.with_args(dtype=torch.quint8, quant_min=0, quant_max=127)  # 7 bits: see above
    mapping = get_default_qconfig_mapping(ENGINE).set_global(QConfig(activation, default_per_channel_weight_observer))
    names = [(name, type(module)) for name, module in model.named_modules()]
    first_conv = next((name for name, kind in names if kind is nn.Conv2d), None)
    last_linear = next((name for name, kind in reversed(names) if kind is nn.Linear), None)
    for name in {first_conv, last_linear} - {None}:
        mapping.set_module_name(name, None)
    return mapping


def observed(model: nn.Module, crop: int, observer=None) -> nn.Module:
    """A copy of `model` (eval) with its batch norms folded and `observer` (default MinMaxObserver)
    on every activation to quantize."""
    torch.backends.quantized.engine = ENGINE
    example = torch.zeros(1, 3, crop, crop, device=next(model.parameters()).device)
    with warnings.catch_warnings():  # torch 2.10 marks FX quantization deprecated; the pinned torch runs it
        warnings.simplefilter("ignore")
        try:
            return prepare_fx(copy.deepcopy(model).eval(), _mapping(model, observer or MinMaxObserver),
                              example_inputs=(example,))
        except Exception as error:  # noqa: BLE001 - FX cannot trace every model; the caller says so
            raise QuantizationError(f"{type(error).__name__}: {str(error)[:300]}") from error


def _observers(model: nn.Module) -> list[nn.Module]:
    """The activation observers in graph order (FX numbers them activation_post_process_0, _1, ...)."""
    found = {name: module for name, module in model.named_modules()
             if isinstance(module, (MinMaxObserver, HistogramObserver))}
    return [found[name] for name in sorted(found, key=lambda name: int(name.rpartition("_")[2]))]


@torch.inference_mode()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor], crop: int, images: int = CALIBRATION_IMAGES,
              stop=None) -> tuple[list[list[float]], int]:
    """Each activation's range, in graph order, from a histogram of its values over the first
    `images` of `batches` (normalised float batches on the model's device): the range that
    quantizes those values with the least error, so outliers do not stretch it. And how many
    images that was."""
    watching, seen = observed(model, crop, HistogramObserver), 0
    for batch in batches:
        if seen >= images or (stop is not None and stop.requested_here):
            break
        watching(batch[:images - seen])
        seen += len(batch[:images - seen])
    if not seen:
        raise QuantizationError("no calibration images")
    # The search convert_fx would run; serving's MinMaxObserver turns its [min, max] into the same
    # scale and zero point.
    return [[float(bound) for bound in observer._non_linear_param_search()] for observer in _observers(watching)], seen


def combine(per_rank: list[list[list[float]]]) -> list[list[float]]:
    """The ranges of ranks that calibrated on their own shards: the widest of each."""
    return [[min(low for low, _ in pairs), max(high for _, high in pairs)] for pairs in zip(*per_rank)]


def build(model: nn.Module, ranges: list[list[float]], crop: int) -> nn.Module:
    """The int8 model (CPU, eval) of fp32 `model` with recorded activation `ranges`."""
    watching = observed(model, crop).cpu()  # a copy: the fp32 model stays on its device
    observers = _observers(watching)
    if len(observers) != len(ranges):
        raise QuantizationError(f"model.json records {len(ranges)} activation ranges; this model has "
                                f"{len(observers)} activations to quantize")
    for observer, (low, high) in zip(observers, ranges):
        observer.min_val.fill_(low)
        observer.max_val.fill_(high)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_fx(watching).eval()
