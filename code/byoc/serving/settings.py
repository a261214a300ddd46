"""Server settings from the environment, checked once at start (a bad one stops `serve` naming it;
names: byoc.contract).

  SAGEMAKER_BIND_TO_PORT          port for /ping and /invocations              8080
  SAGEMAKER_SAFE_PORT_RANGE       ports the container may use beyond it,       the first free port
                                  "LOW-HIGH" (MMS's management API takes one,  above the serving port
                                  on loopback; MMS binds ports up to 32766)
  SAGEMAKER_MODEL_SERVER_WORKERS  worker processes per model                   1 per GPU, else 1
  SAGEMAKER_MODEL_SERVER_TIMEOUT  seconds a request may take (a model load   60
  (or ..._TIMEOUT_SECONDS)        may take MODEL_LOAD_TIMEOUT_S, 300)
  SAGEMAKER_MULTI_MODEL           "true": a multi-model endpoint (/models)     false
  BYOC_MAX_BATCH_SIZE             requests run together in one forward pass    8
  BYOC_MAX_BATCH_DELAY_MS         how long a worker waits to fill a batch      2
  BYOC_TORCH_THREADS              torch threads per worker                     cores / workers
  BYOC_ACCESS_LOG                 "true": a log line per request (MMS's        false
                                  access log), /ping included
  BYOC_FRONTEND_JIT               c1 (MMS's frontend JVM compiles with C1      c1
                                  alone, and early), tiered (the JVM's
                                  default)
  GOMP_SPINCOUNT                  rounds torch's OpenMP threads spin for       10000 (the image's ENV;
                                  work before they sleep (read by libgomp)     libgomp's own: 300000)
  BYOC_SERVER_USER                user the model server runs as ("root"       byoc
                                  keeps root)
  BYOC_DEVICE                     auto (the GPUs if any), cpu, cuda            auto (byoc.cuda)
  BYOC_PRECISION                  auto (bf16 where native and the model's      auto (byoc.precision)
                                  measured agreement clears the bar, else on
                                  a CPU int8 where its agreement does), fp32,
                                  bf16, int8
  BYOC_PRECISION_MIN_AGREEMENT    percent agreement with fp32 auto needs       99.5
  BYOC_CPU_GRAPH                  onednn (on a CPU, the model traced, frozen   onednn (byoc.cpu_graph);
                                  and fused by oneDNN Graph), eager            eager with multi-model
Per-request limits (Limits): BYOC_MAX_PAYLOAD_MB, BYOC_MAX_IMAGE_PIXELS, BYOC_MAX_REQUEST_PIXELS,
BYOC_MAX_ASPECT_RATIO, BYOC_MAX_IMAGES.
Test only: BYOC_TEST_STALL_FILE (while that file exists, every forward pass blocks; SageMaker
never sets it and no request can create it).
"""
import os
from dataclasses import dataclass

from byoc import contract, cuda


class SettingError(ValueError):
    """A setting has a value the server cannot use."""


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def _whole_number(name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} must be a whole number") from None
    if value < minimum:
        raise SettingError(f"{name}={raw!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name}={raw!r} must be at most {maximum}")
    return value


def _number(name: str, default: float, minimum: float) -> float:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} must be a number") from None
    if not value >= minimum:  # also refuses nan
        raise SettingError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _gpu_count() -> int:
    """The GPUs the workers use: none when BYOC_DEVICE=cpu. No torch import at server start."""
    if os.environ.get(contract.DEVICE_SETTING, "").strip().lower() == "cpu":
        return 0
    return cuda.gpu_count()


@dataclass(frozen=True)
class Limits:
    """What one request may cost, checked before the memory is spent; each refusal names its setting."""

    max_payload_bytes: int  # BYOC_MAX_PAYLOAD_MB: the body
    max_image_pixels: int  # BYOC_MAX_IMAGE_PIXELS: one image, from its header
    max_request_pixels: int  # BYOC_MAX_REQUEST_PIXELS: all images (or array rows) of one request
    max_aspect_ratio: float  # BYOC_MAX_ASPECT_RATIO: long side / short side
    max_images: int  # BYOC_MAX_IMAGES: images in a JSON list, rows in a .npy batch


def _payload_mb() -> int:
    """BYOC_MAX_PAYLOAD_MB, raised to a transform job's MaxPayloadInMB (SAGEMAKER_MAX_PAYLOAD_IN_MB;
    0 means chunked bodies of any size SageMaker sends, so its maximum)."""
    own = _whole_number(contract.MAX_PAYLOAD_SETTING, 6, maximum=1024)
    raw = _raw(contract.BATCH_MAX_PAYLOAD_SETTING)
    if not raw:
        return own
    batch = _whole_number(contract.BATCH_MAX_PAYLOAD_SETTING, 0, minimum=0, maximum=contract.MAX_BATCH_PAYLOAD_MB)
    return max(own, batch or contract.MAX_BATCH_PAYLOAD_MB)


def limits_from_environment() -> Limits:
    return Limits(
        max_payload_bytes=_payload_mb() * 1024 * 1024,
        max_image_pixels=_whole_number(contract.MAX_IMAGE_PIXELS_SETTING, 40_000_000),
        max_request_pixels=_whole_number(contract.MAX_REQUEST_PIXELS_SETTING, 100_000_000),
        max_aspect_ratio=_number(contract.MAX_ASPECT_RATIO_SETTING, 20.0, minimum=1.0),
        max_images=_whole_number(contract.MAX_IMAGES_SETTING, 64),
    )


def _timeout_s() -> int:
    """SAGEMAKER_MODEL_SERVER_TIMEOUT, or ..._SECONDS as the newer toolkits call it: seconds either way."""
    names = (contract.TIMEOUT_SECONDS_SETTING, contract.TIMEOUT_SETTING)
    values = {name: _whole_number(name, 0) for name in names if _raw(name)}
    if len(set(values.values())) > 1:
        raise SettingError(" and ".join(f"{n}={v}" for n, v in values.items()) + " disagree: set one")
    return next(iter(values.values()), 60)


# A worker's model load gets its own bound, not the request timeout (MMS would use that for both,
# and a short request timeout would then never let a model load).
MODEL_LOAD_TIMEOUT_S = 300
# A worker that refuses a model package writes why in the model server's run directory (its TMPDIR):
# serve says it as it exits, a multi-model load answers it (byoc.serving.handler, serve, MultiModels).
REFUSAL_FILE = "cannot-serve"


def refusal_file(model_name: str, multi_model: bool) -> str:
    return f"{REFUSAL_FILE}.{model_name}" if multi_model else REFUSAL_FILE
MAX_PORT = contract.MAX_SERVER_PORT


def _port_range(bind_port: int) -> tuple[int, int] | None:
    raw = _raw(contract.SAFE_PORTS_SETTING)
    if not raw:
        return None
    low, _, high = raw.partition("-")
    try:
        first, last = int(low), int(high)
    except ValueError:
        raise SettingError(f"{contract.SAFE_PORTS_SETTING}={raw!r} must be LOW-HIGH, e.g. 10000-10999") from None
    usable = [port for port in range(first, min(last, MAX_PORT) + 1) if port != bind_port][:1]
    if not 1 <= first <= last <= 65535 or not usable:
        raise SettingError(f"{contract.SAFE_PORTS_SETTING}={raw!r} must be LOW-HIGH within 1-65535 and hold a port "
                           f"up to {MAX_PORT} (the model server's limit) other than SAGEMAKER_BIND_TO_PORT={bind_port}")
    return first, last


@dataclass(frozen=True)
class Settings:
    port: int
    safe_ports: tuple[int, int] | None
    workers: int
    timeout_s: int
    multi_model: bool
    max_batch_size: int
    max_batch_delay_ms: int
    limits: Limits
    torch_threads: int
    server_user: str
    gpus: int
    stall_file: str  # test only (BYOC_TEST_STALL_FILE)
    precision: str = "auto"  # BYOC_PRECISION
    min_agreement: float = contract.DEFAULT_MIN_AGREEMENT_PERCENT / 100  # BYOC_PRECISION_MIN_AGREEMENT, a fraction
    cpu_graph: bool = True  # BYOC_CPU_GRAPH=onednn
    access_log: bool = False  # BYOC_ACCESS_LOG
    frontend_jit: str = "c1"  # BYOC_FRONTEND_JIT

    def execution_parameters(self) -> dict:
        """GET /execution-parameters: what a transform job that sets none of these should use. Each
        request fills a batch slot, so workers x batch size requests keep every worker busy, within
        SageMaker's bound on concurrency x payload. "MultiRecord" is the API's own spelling, which
        SDK local mode also requires (the developer guide's example writes MULTI_RECORD)."""
        payload_mb = min(self.limits.max_payload_bytes // (1024 * 1024), contract.MAX_BATCH_PAYLOAD_MB)
        concurrency = min(self.workers * self.max_batch_size, contract.MAX_BATCH_PAYLOAD_MB // payload_mb)
        return {"MaxConcurrentTransforms": max(1, concurrency), "BatchStrategy": "MultiRecord",
                "MaxPayloadInMB": payload_mb}

    @property
    def worker_timeout_s(self) -> int:
        """MMS's own timeout of a busy worker (loads included): only a backstop behind the alarms."""
        return max(self.timeout_s, MODEL_LOAD_TIMEOUT_S) + 1


def from_environment() -> Settings:
    cores = len(os.sched_getaffinity(0))
    gpus = _gpu_count()
    workers = _whole_number(contract.WORKERS_SETTING, max(1, gpus))
    multi_model = _raw(contract.MULTI_MODEL_SETTING).lower()
    if multi_model not in ("", "true", "false"):
        raise SettingError(f"{contract.MULTI_MODEL_SETTING}={multi_model!r} must be true or false")
    port = _whole_number(contract.PORT_SETTING, 8080, maximum=MAX_PORT)
    _spin_count()
    return Settings(
        port=port,
        safe_ports=_port_range(port),
        workers=workers,
        timeout_s=_timeout_s(),
        multi_model=multi_model == "true",
        max_batch_size=_whole_number(contract.MAX_BATCH_SIZE_SETTING, 8),
        max_batch_delay_ms=_whole_number(contract.MAX_BATCH_DELAY_SETTING, 2, minimum=0),
        limits=limits_from_environment(),
        torch_threads=_whole_number(contract.TORCH_THREADS_SETTING, max(1, cores // workers)),
        server_user=_raw(contract.SERVER_USER_SETTING) or "byoc",
        gpus=gpus,
        stall_file=_raw(contract.STALL_FILE_SETTING),
        precision=_choice(contract.PRECISION_SETTING, contract.PRECISION_CHOICES),
        min_agreement=_percent(contract.MIN_AGREEMENT_SETTING, contract.DEFAULT_MIN_AGREEMENT_PERCENT) / 100,
        cpu_graph=cpu_graph_default(multi_model == "true"),
        access_log=_choice(contract.ACCESS_LOG_SETTING, ("false", "true")) == "true",
        frontend_jit=_choice(contract.FRONTEND_JIT_SETTING, contract.FRONTEND_JIT_CHOICES),
    )


def cpu_graph_default(multi_model: bool) -> bool:
    """Graph mode unless asked not to; a multi-model endpoint only when asked: each graph's packed weights
    grow after its load (byoc.cpu_graph), and later loads cannot see the growth still to come."""
    if not _raw(contract.CPU_GRAPH_SETTING):
        return not multi_model
    return _choice(contract.CPU_GRAPH_SETTING, contract.CPU_GRAPH_CHOICES) == "onednn"


def _spin_count() -> None:
    """libgomp reads GOMP_SPINCOUNT itself; a value it cannot parse costs one line on a worker's stderr
    and leaves its default spin in place: refuse it here instead, in libgomp's own terms."""
    raw = _raw(contract.OPENMP_SPIN_SETTING)
    problem = contract.SERVING_SETTINGS[contract.OPENMP_SPIN_SETTING].problem(raw) if raw else None
    if problem:
        raise SettingError(f"{contract.OPENMP_SPIN_SETTING}={raw!r} {problem}")


def _choice(name: str, choices: tuple[str, ...]) -> str:
    raw = _raw(name).lower() or choices[0]
    if raw not in choices:
        raise SettingError(f"{name}={_raw(name)!r} must be one of {', '.join(choices)}")
    return raw


def _percent(name: str, default: float) -> float:
    value = _number(name, default, minimum=0.0)
    if value > 100:
        raise SettingError(f"{name}={_raw(name)!r} must be at most 100 (a percentage)")
    return value
