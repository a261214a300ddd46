"""The CPU's graph mode: the model traced and frozen to TorchScript, for oneDNN Graph to fuse.

Frozen, the weights are constants: batch norm folds into the convolutions, and oneDNN Graph runs
convolution, bias, residual add and ReLU as one kernel on weights it packed once. ResNet-50 runs
1.4-1.7x as fast as eager PyTorch on a CPU, in fp32 and bf16, with the same top-1 (BENCHMARKS.md).
Unlike torch.compile's inductor it needs no C compiler: oneDNN writes its own machine code at run
time.

TorchScript specialises the fused graph to each input shape it meets (0.05-0.3 s the first
time, and memory for each shape kept), so run() feeds it at most CHUNK images at a time: a
worker then holds at most CHUNK shapes whatever the requests' sizes.
"""
import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)

CHUNK = 8  # images per call of a traced model: the server's default batch, and a bound on its shapes


def trace(model: nn.Module, like: torch.Tensor) -> torch.jit.ScriptModule | None:
    """`model` (eval, channels_last, in its serving dtype) traced on an input shaped like `like`, and
    frozen; None, with the reason logged, if it cannot be (the model then runs eagerly).
    oneDNN fusion is a process-wide switch of TorchScript's executor; only these models use it."""
    torch.jit.enable_onednn_fusion(True)
    example = torch.zeros(like.shape, dtype=like.dtype).contiguous(memory_format=torch.channels_last)
    try:
        # torch 2.10 marks TorchScript deprecated in favour of torch.compile, which needs a C compiler
        # that the serving image does not carry; the pinned torch still runs it fully.
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            # An int8 model's scales become constants of the graph, as they should: not worth a warning.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    except Exception as error:  # noqa: BLE001 - any failure to trace leaves the eager model, which works
        logger.warning("graph mode unavailable for this model (%s: %s); running it eagerly",
                       type(error).__name__, str(error)[:300])
        return None


def run(traced: torch.jit.ScriptModule, batch: torch.Tensor) -> torch.Tensor:
    if len(batch) <= CHUNK:
        return traced(batch)
    return torch.cat([traced(chunk) for chunk in batch.split(CHUNK)])
