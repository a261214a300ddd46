"""Server settings from the environment, checked once at start.

  SAGEMAKER_BIND_TO_PORT          port for /ping and /invocations            8080
  SAGEMAKER_MODEL_SERVER_WORKERS  worker processes per model                 1 per GPU, else 1
  SAGEMAKER_MODEL_SERVER_TIMEOUT  seconds one request may take               60
  SAGEMAKER_MULTI_MODEL           "true": a multi-model endpoint (/models)   false
  BYOC_MAX_BATCH_SIZE             requests run together in one forward pass  8
  BYOC_MAX_BATCH_DELAY_MS         how long a worker waits to fill a batch    2
  BYOC_MAX_PAYLOAD_MB             largest request body accepted              6 (SageMaker's own limit)
  BYOC_TORCH_THREADS              torch threads per worker                   cores / workers
  BYOC_SERVER_USER                user the model server runs as              byoc; multi-model: root
                                  ("root" keeps root)
  BYOC_DEVICE                     auto (the GPUs if any), cpu, cuda          auto (byoc.cuda)
"""
import os
from dataclasses import dataclass

from byoc import contract, cuda


class SettingError(ValueError):
    """A setting has a value the server cannot use."""


def _whole_number(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} must be a whole number") from None
    if value < minimum:
        raise SettingError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _gpu_count() -> int:
    """The GPUs the workers use: none when BYOC_DEVICE=cpu. No torch import at server start."""
    if os.environ.get(contract.DEVICE_SETTING, "").strip().lower() == "cpu":
        return 0
    return cuda.gpu_count()


@dataclass(frozen=True)
class Settings:
    port: int
    workers: int
    timeout_s: int
    multi_model: bool
    max_batch_size: int
    max_batch_delay_ms: int
    max_payload_bytes: int
    torch_threads: int
    server_user: str
    gpus: int


def from_environment() -> Settings:
    cores = len(os.sched_getaffinity(0))
    gpus = _gpu_count()
    workers = _whole_number("SAGEMAKER_MODEL_SERVER_WORKERS", max(1, gpus))
    multi_model = os.environ.get("SAGEMAKER_MULTI_MODEL", "").strip().lower()
    if multi_model not in ("", "true", "false"):
        raise SettingError(f"SAGEMAKER_MULTI_MODEL={multi_model!r} must be true or false")
    return Settings(
        port=_whole_number("SAGEMAKER_BIND_TO_PORT", 8080),
        workers=workers,
        timeout_s=_whole_number("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60),
        multi_model=multi_model == "true",
        max_batch_size=_whole_number("BYOC_MAX_BATCH_SIZE", 8),
        max_batch_delay_ms=_whole_number("BYOC_MAX_BATCH_DELAY_MS", 2, minimum=0),
        max_payload_bytes=_whole_number("BYOC_MAX_PAYLOAD_MB", 6) * 1024 * 1024,
        torch_threads=_whole_number("BYOC_TORCH_THREADS", max(1, cores // workers)),
        # Multi-model: SageMaker adds model files after the start, with permissions we cannot check.
        server_user=os.environ.get("BYOC_SERVER_USER", "").strip() or ("root" if multi_model == "true" else "byoc"),
        gpus=gpus,
    )
