"""What the two images and the host tools agree on, in one place and without torch.

- The model package in /opt/ml/model: its file names and model.json (ModelSpec).
- The architecture names a model.json may hold (byoc.models builds them).
- Class folders and the labels the endpoint answers with.
- Hyperparameters as SageMaker passes them to a training job.
- Requests to the endpoint: content types, custom attributes, top-k.
- The settings each image reads from its environment; the hosting modes and their request limits.

The training image writes a model package, the serving image reads it, and the
host tools (byoc-cloud, the Lambda, the tests) talk to both through these
names: change one here and every side changes with it.
"""
import base64
import binascii
import json
import math
import re
import stat
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

# --- the model package ---------------------------------------------------------------------
WEIGHTS_FILE = "model.safetensors"  # safetensors: loading runs no code
SPEC_FILE = "model.json"
PICKLES = ("*.pth", "*.pt", "*.bin", "*.pkl", "*.ckpt")  # never loaded: unpickling runs code
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHITECTURES = ("small_cnn", "resnet_small", "wrn28_10", "resnet50")


@dataclass(frozen=True)
class Preprocessing:
    resize_size: int  # shorter side is resized to this
    crop_size: int  # then a centred square of this side is cut out
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    class_names: list[str]
    preprocessing: Preprocessing
    architecture_args: dict = field(default_factory=dict)
    # The training job's bf16-against-fp32 measurement (byoc.precision.agreement): {"dtype": "bf16",
    # "images", "agreement", "fp32_accuracy", "accuracy", "split", "device"}; {} in older packages.
    precision: dict = field(default_factory=dict)
    # The same for int8 (byoc.quantized; "device" is the CPU, where int8 runs), plus what rebuilds the
    # int8 model: "ranges", each quantized activation's [min, max] in graph order, and
    # "calibration_images"; {} in older packages.
    int8: dict = field(default_factory=dict)

    def document(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, indent=2) + "\n"


class ModelPackageError(Exception):
    """The model directory is missing, incomplete or not one of ours."""


def load_spec(model_dir: str | Path) -> ModelSpec:
    """model.json, checked: `serve` calls this before the model server starts, so a wrong model
    directory fails in a second with a clear reason, not in every worker. Every field is checked
    for type and range here, because a wrong one otherwise surfaces far from its cause: class names
    that are not strings come back as labels, a zero std as NaN probabilities, a huge crop as a
    worker out of memory on the first request."""
    path = Path(model_dir) / SPEC_FILE
    document = _read_json(path, model_dir)

    def wrong(what: str) -> ModelPackageError:
        return ModelPackageError(f"{path}: {what}")

    if not isinstance(document, dict) or not _whole(document.get("format_version")) \
            or document["format_version"] != FORMAT_VERSION:
        version = document.get("format_version") if isinstance(document, dict) else None
        raise ModelPackageError(f"{path} has format_version {version!r}; this code reads {FORMAT_VERSION}")
    unknown = sorted(set(document) - SPEC_KEYS)
    missing = sorted({"architecture", "class_names", "preprocessing"} - set(document))
    if unknown or missing:
        raise wrong("lacks a field or has a wrong one: " + "; ".join(
            [f"missing {', '.join(missing)}"] * bool(missing) + [f"unknown {', '.join(unknown)}"] * bool(unknown)))
    architecture, names = document["architecture"], document["class_names"]
    if architecture not in ARCHITECTURES:
        raise ModelPackageError(f"{path} names architecture {architecture!r}; this code builds "
                                f"{', '.join(ARCHITECTURES)}")
    if problem := class_names_problem(names):
        raise wrong(problem)
    args, record = document.get("architecture_args", {}), document.get("precision") or {}
    int8 = document.get("int8") or {}
    if not all(isinstance(value, dict) for value in (args, record, int8)):
        raise wrong("architecture_args, precision and int8 must be JSON objects")
    spec = ModelSpec(architecture, names, _preprocessing(document["preprocessing"], wrong), args, record, int8)
    if spec.precision and not _measured(spec.precision):
        raise ModelPackageError(f"{path} has a precision record without a numeric agreement (0-1) and image count: "
                                f"{spec.precision!r}")
    if int8 and not _measured(int8):
        raise wrong(f"the int8 record lacks a numeric agreement (0-1) and image count: {_short(int8)}")
    if int8 and (problem := ranges_problem(int8.get("ranges"))):
        raise wrong(f"the int8 record's {problem}")
    return spec


def ranges_problem(ranges) -> str | None:
    """Why an int8 record's activation ranges are not a list of finite [min, max] pairs; None if
    they are (byoc.quantized rebuilds the int8 model from them)."""
    if not isinstance(ranges, list) or not ranges:
        return "ranges must be a non-empty list of [min, max] pairs"
    for pair in ranges:
        if not (isinstance(pair, list) and len(pair) == 2 and all(_finite(v) for v in pair) and pair[0] <= pair[1]):
            return f"ranges must be finite [min, max] pairs with min <= max, not {_short(pair)}"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


SPEC_KEYS = {"format_version", "architecture", "class_names", "preprocessing", "architecture_args", "precision",
             "int8"}
MAX_SPEC_BYTES = 16 * 1024 * 1024  # 10,000 classes of 255 characters fit many times over
MAX_CLASS_NAME = 255  # a class is a folder name in training (NAME_MAX)
# The crop side, as training's image_size takes it (byoc.training.hyperparameters); the resize side
# is at least the crop (the transform computes only the crop, so a large one costs nothing).
MIN_CROP, MAX_CROP, MAX_RESIZE = 8, 1024, 2**31 - 1


def weights_file(model_dir: str | Path) -> Path:
    """model.safetensors, which must be a regular file; a pickle in its place is named, never loaded."""
    model_dir = Path(model_dir)
    weights = model_dir / WEIGHTS_FILE
    try:
        mode = weights.stat().st_mode
    except FileNotFoundError:
        pickled = sorted(p.name for pattern in PICKLES for p in model_dir.glob(pattern))
        hint = (f"; {', '.join(pickled)} is never loaded (unpickling runs code): save the model's state_dict "
                "with safetensors.torch.save_file as model.safetensors") if pickled else ""
        raise ModelPackageError(f"{weights} is missing{hint}") from None
    if not stat.S_ISREG(mode):
        raise ModelPackageError(f"{weights} is not a regular file")
    return weights


def class_names_problem(names) -> str | None:
    """Why `names` cannot be a model's labels, or None: the training job checks its class folders'
    labels with this too, so it never writes a package the endpoint refuses."""
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and 0 < len(n) <= MAX_CLASS_NAME for n in names):
        return (f"class_names must be a list of 1-{MAX_CLASS_NAME} character strings, one per class "
                f"(the model's outputs, in order), not {_brief(names)}")
    repeated = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if repeated:
        return f"class_names repeats {_brief(repeated)}: each class needs its own name"
    return None


def _read_json(path: Path, model_dir) -> object:
    """The document in `path`, which must be a regular file (a FIFO or /dev/zero would block or
    never end), in UTF-8 (a leading BOM is ignored, as RFC 8259 allows), without duplicate keys
    (which one would win is a guess) or NaN/Infinity (not JSON)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ModelPackageError(f"{path} is not a regular file")
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise ModelPackageError(f"{path} has {path.stat().st_size:,} bytes; a model.json has at most "
                                    f"{MAX_SPEC_BYTES:,}")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ModelPackageError(f"{path} is missing: is {model_dir} a model trained by this kit?"
                                + _nested_hint(Path(model_dir))) from None
    except PermissionError:
        raise ModelPackageError(f"{path} cannot be read: permission denied") from None
    except UnicodeDecodeError as error:
        raise ModelPackageError(f"{path} is not valid JSON: it is not UTF-8 ({error})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError, so are ours
        raise ModelPackageError(f"{path} is not valid JSON: {str(error)[:200]}") from None


def _nested_hint(model_dir: Path) -> str:
    """`tar -czf model.tar.gz outdir/` puts the package one folder down: say so, and how to fix it."""
    try:
        found = sorted(model_dir.glob(f"*/{SPEC_FILE}"))
    except OSError:
        return ""
    if not found:
        return _other_stack_hint(model_dir)
    inner = found[0].parent
    return (f" It holds {inner.name}/{SPEC_FILE}: the package is one folder too deep, as `tar -czf model.tar.gz "
            f"{inner.name}/` makes it; pack the folder's contents instead: "
            f"`tar -czf model.tar.gz -C {inner.name} .`")


# What a package made for AWS's PyTorch serving containers (or TorchServe) holds instead of model.json.
OTHER_STACKS_FILES = ("code/inference.py", "inference.py", "*.pth", "*.pt", "*.mar", "model.bin")


def _other_stack_hint(model_dir: Path) -> str:
    """A package made for another serving stack: say what this image serves instead, and that it runs no code."""
    try:
        found = sorted({str(path.relative_to(model_dir)) for pattern in OTHER_STACKS_FILES
                        for path in model_dir.glob(pattern)})
    except OSError:
        return ""
    if not found:
        return ""
    return (f" It holds {', '.join(found[:4])}: a package for another serving stack (AWS's PyTorch containers' "
            "model_fn/predict_fn, TorchServe). This image serves what its training image writes, model.json beside "
            "model.safetensors (README: the model package), and never runs code from a package.")


def _unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise ValueError(f"key {next(k for k in keys if keys.count(k) > 1)!r} appears twice in one object")
    return dict(pairs)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value) -> bool:
    """A JSON number that is a finite float (10**400 is an int no float holds)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _preprocessing(document, wrong) -> Preprocessing:
    if not isinstance(document, dict) or not {"resize_size", "crop_size"} <= set(document) \
            or not set(document) <= {"resize_size", "crop_size", "mean", "std"}:
        raise wrong("preprocessing must be an object with resize_size, crop_size and optionally mean and std, "
                    f"not {_brief(document)}")
    crop, resize = document["crop_size"], document["resize_size"]
    if not _whole(crop) or not MIN_CROP <= crop <= MAX_CROP:
        raise wrong(f"preprocessing.crop_size must be a whole number of pixels, {MIN_CROP}-{MAX_CROP}, not {crop!r}")
    if not _whole(resize) or not crop <= resize <= MAX_RESIZE:
        raise wrong(f"preprocessing.resize_size must be a whole number of pixels, at least crop_size ({crop}), "
                    f"not {resize!r}")
    channels = {}
    for name, default, low in (("mean", IMAGENET_MEAN, -math.inf), ("std", IMAGENET_STD, 0)):
        values = document.get(name, default)
        if not isinstance(values, (list, tuple)) or len(values) != 3 or not all(
                _finite(v) and v > low
                for v in values):
            raise wrong(f"preprocessing.{name} must be three finite numbers (red, green, blue)"
                        + (", each above 0" if low == 0 else "") + f", not {_brief(values)}")
        channels[name] = tuple(float(v) for v in values)
    return Preprocessing(resize, crop, **channels)


def _measured(record: dict) -> bool:
    numbers = [record.get(name) for name in ("agreement", "images")]
    return all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers) \
        and 0 <= numbers[0] <= 1 and numbers[1] >= 0


# --- classes -----------------------------------------------------------------------------
def class_folder(index: int, name: str) -> str:
    """The dog-breed layout's folder for class `index` (from 0): (0, 'T-shirt_top') -> '001.T-shirt_top'."""
    return f"{index + 1:03d}.{name}"


def display_name(folder: str) -> str:
    """The label the endpoint answers with: '001.T-shirt_top' -> 'T-shirt top'. In NFC, as text is
    typed and compared: a folder made on macOS may be named in NFD ('e' and a combining accent)."""
    return unicodedata.normalize("NFC", re.sub(r"^\d+\.", "", folder).replace("_", " "))


# --- hyperparameters ---------------------------------------------------------------------
def encode_hyperparameters(values: dict) -> dict[str, str]:
    """{"epochs": 3, "model": "small_cnn"} -> {"epochs": "3", "model": '"small_cnn"'}: every value a
    JSON-encoded string, as SageMaker's API takes them and as the training toolkit decodes them."""
    return {str(name): json.dumps(value) for name, value in values.items()}


# --- the images' CUDA build --------------------------------------------------------------
# Labels make build sets from the image's own torch (byoc.cuda.facts), read by `byoc-cloud check`.
LABEL_TORCH = "byoc.torch.version"
LABEL_CUDA = "byoc.cuda.version"  # "12.8"; "" for a CPU-only torch
LABEL_ARCHS = "byoc.cuda.archs"  # "sm_70,sm_75,...": the GPU architectures torch has kernels for
LABEL_COMPAT = "byoc.cuda.compat-driver"  # the forward-compatibility libraries' driver version, or ""
# The oldest driver a CUDA major runs on through minor-version compatibility (NVIDIA's CUDA
# compatibility guide); an older one needs the forward-compatibility libraries.
MIN_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}


def capability(arch: str) -> tuple[int, int] | None:
    """'sm_86' -> (8, 6), 'sm_120' -> (12, 0); None for anything else (e.g. 'sm_90a', 'compute_90')."""
    digits = arch.removeprefix("sm_")
    return (int(digits[:-1]), int(digits[-1])) if arch.startswith("sm_") and digits.isdigit() and len(digits) > 1 \
        else None


def archs_cover(archs, gpu: tuple[int, int]) -> bool:
    """Kernels built for sm_XY run on GPUs of compute capability X.Z for Z >= Y (same major)."""
    return any(c is not None and c[0] == gpu[0] and c[1] <= gpu[1] for c in map(capability, archs))


# BYOC_DEVICE: auto (the GPUs when the container has them, else the CPU), cpu (on purpose), cuda.
DEVICE_SETTING = "BYOC_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


# BYOC_PRECISION: auto (bf16 where the CPU or GPU runs it natively and the model's measured agreement
# with fp32 clears BYOC_PRECISION_MIN_AGREEMENT; else, on a CPU, int8 where its agreement clears it;
# else fp32), fp32, bf16, int8 (byoc.precision).
PRECISION_SETTING = "BYOC_PRECISION"
PRECISION_CHOICES = ("auto", "fp32", "bf16", "int8")
MIN_AGREEMENT_SETTING = "BYOC_PRECISION_MIN_AGREEMENT"
DEFAULT_MIN_AGREEMENT_PERCENT = 99.5

# BYOC_CPU_GRAPH: how a CPU runs the model: onednn (traced, frozen and fused by oneDNN Graph,
# byoc.cpu_graph) or eager (plain PyTorch). GPUs always run eagerly. A multi-model endpoint defaults
# to eager: a graph's memory grows with the batch sizes it meets, after the load that found room.
CPU_GRAPH_SETTING = "BYOC_CPU_GRAPH"
CPU_GRAPH_CHOICES = ("onednn", "eager")


# MMS cannot bind a port from 32767 up (its Connector compares with Short.MAX_VALUE).
MAX_SERVER_PORT = 32766
# A transform job's MaxPayloadInMB is at most this, and so is MaxConcurrentTransforms x MaxPayloadInMB.
MAX_BATCH_PAYLOAD_MB = 100

# --- settings the images read from their environment --------------------------------------
# The names the serving image's settings and the training image read, and what byoc-cloud checks
# `--env NAME=VALUE` against: a typo is refused before any AWS call, not found in a running endpoint.
PORT_SETTING = "SAGEMAKER_BIND_TO_PORT"
SAFE_PORTS_SETTING = "SAGEMAKER_SAFE_PORT_RANGE"
WORKERS_SETTING = "SAGEMAKER_MODEL_SERVER_WORKERS"
TIMEOUT_SETTING = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
TIMEOUT_SECONDS_SETTING = "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS"  # the newer toolkits' name, also seconds
MULTI_MODEL_SETTING = "SAGEMAKER_MULTI_MODEL"
MAX_BATCH_SIZE_SETTING = "BYOC_MAX_BATCH_SIZE"
MAX_BATCH_DELAY_SETTING = "BYOC_MAX_BATCH_DELAY_MS"
MAX_PAYLOAD_SETTING = "BYOC_MAX_PAYLOAD_MB"
MAX_IMAGE_PIXELS_SETTING = "BYOC_MAX_IMAGE_PIXELS"
MAX_REQUEST_PIXELS_SETTING = "BYOC_MAX_REQUEST_PIXELS"
MAX_ASPECT_RATIO_SETTING = "BYOC_MAX_ASPECT_RATIO"
MAX_IMAGES_SETTING = "BYOC_MAX_IMAGES"
TORCH_THREADS_SETTING = "BYOC_TORCH_THREADS"
SERVER_USER_SETTING = "BYOC_SERVER_USER"
# BYOC_ACCESS_LOG: true logs a line per request (MMS's access log and its worker thread's timing).
ACCESS_LOG_SETTING = "BYOC_ACCESS_LOG"
# BYOC_FRONTEND_JIT: c1 runs MMS's frontend JVM with its quick compiler alone (byoc.serving.serve).
FRONTEND_JIT_SETTING = "BYOC_FRONTEND_JIT"
FRONTEND_JIT_CHOICES = ("c1", "tiered")
STALL_FILE_SETTING = "BYOC_TEST_STALL_FILE"  # tests only: while that file exists, forward passes block
# Batch transform: SageMaker sets these from CreateTransformJob's fields (your-algorithms-batch-code).
BATCH_SETTING = "SAGEMAKER_BATCH"
BATCH_MAX_PAYLOAD_SETTING = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
BATCH_STRATEGY_SETTING = "SAGEMAKER_BATCH_STRATEGY"
BATCH_CONCURRENCY_SETTING = "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"
THREADS_SETTING = "OMP_NUM_THREADS"  # training: torch threads per process
# serving: rounds torch's OpenMP threads spin for more work before they sleep (read by libgomp itself;
# the serving image sets 10000, containers/Dockerfile says why)
OPENMP_SPIN_SETTING = "GOMP_SPINCOUNT"
NCCL_DEBUG_SETTING = "NCCL_DEBUG"  # training on several GPUs or hosts: NCCL's own log level


@dataclass(frozen=True)
class Setting:
    name: str
    meaning: str
    default: str
    minimum: int | float | None = None  # a whole number (a number, if a float), at least this
    maximum: int | None = None
    choices: tuple[str, ...] = ()  # one of these, in any case
    pattern: str = ""  # or text of this form (a regular expression, shown in the refusal)
    set_by: str = ""  # SageMaker sets it itself, from this: a user's value would be overwritten or clash

    def problem(self, value: str) -> str | None:
        """Why the image would refuse `value`, or None."""
        text = value.strip()
        if self.choices and text.lower() not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.pattern and not re.fullmatch(self.pattern, text):
            return f"must be of the form {self.pattern}"
        if self.minimum is not None:
            number = _number(text, whole=not isinstance(self.minimum, float))
            if number is None:
                return "must be a number" if isinstance(self.minimum, float) else "must be a whole number"
            if not number >= self.minimum:
                return f"must be at least {self.minimum:g}"
            if self.maximum is not None and number > self.maximum:
                return f"must be at most {self.maximum}"
        return None


def _number(text: str, whole: bool) -> int | float | None:
    if whole:
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else None
    try:
        return float(text)
    except ValueError:
        return None


_DEVICE = Setting(DEVICE_SETTING, "auto: the GPUs when there are any; cpu: the CPU on purpose; cuda: a GPU or fail",
                  "auto", choices=DEVICE_CHOICES)
SERVING_SETTINGS = {s.name: s for s in (
    Setting(PORT_SETTING, "port for /ping and /invocations", "8080", minimum=1, maximum=MAX_SERVER_PORT,
            set_by="SageMaker, for inference pipelines and multi-container endpoints"),
    Setting(WORKERS_SETTING, "worker processes per model", "1 per GPU, else 1", minimum=1),
    Setting(SAFE_PORTS_SETTING, "LOW-HIGH: ports the container may use besides its own (MMS's management "
            "API takes one, on loopback)", "the first free port above the serving port", pattern=r"\d+-\d+",
            set_by="SageMaker, on every endpoint"),
    Setting(TIMEOUT_SETTING, "seconds one request may take (a model load gets 300)", "60", minimum=1),
    Setting(TIMEOUT_SECONDS_SETTING, "the same, as the newer toolkits name it (set one, or both equal)", "60",
            minimum=1),
    Setting(MULTI_MODEL_SETTING, "true: a multi-model endpoint (/models)", "false", choices=("true", "false"),
            set_by="SageMaker, for Mode MultiModel (byoc-cloud deploy --multi-model)"),
    Setting(MAX_BATCH_SIZE_SETTING, "requests run together in one forward pass", "8", minimum=1),
    Setting(MAX_BATCH_DELAY_SETTING, "milliseconds a worker waits to fill a batch", "2", minimum=0),
    Setting(MAX_PAYLOAD_SETTING, "largest request body accepted, in MiB", "6", minimum=1, maximum=1024),
    Setting(MAX_IMAGE_PIXELS_SETTING, "pixels of one image, read from its header before decoding", "40000000",
            minimum=1),
    Setting(MAX_REQUEST_PIXELS_SETTING, "pixels of all images (or array rows) of one request", "100000000",
            minimum=1),
    Setting(MAX_ASPECT_RATIO_SETTING, "an image's long side over its short side", "20", minimum=1.0),
    Setting(MAX_IMAGES_SETTING, "images in one JSON list or rows in one .npy batch", "64", minimum=1),
    Setting(TORCH_THREADS_SETTING, "torch threads in each worker", "cores / workers", minimum=1),
    Setting(ACCESS_LOG_SETTING, "true: a log line per request, /ping included (MMS's access log)", "false",
            choices=("true", "false")),
    Setting(FRONTEND_JIT_SETTING, "c1: the frontend's JVM compiles with C1 alone, after a twentieth of the "
            "usual calls; tiered: the JVM's default (C2 after C1)", "c1", choices=FRONTEND_JIT_CHOICES),
    # libgomp's own form (its env.c): a count, optionally times k, M, G or T (thousands), or infinite.
    Setting(OPENMP_SPIN_SETTING, "rounds torch's OpenMP threads spin for more work before they sleep "
            "(libgomp's own default: 300000)", "10000", pattern=r"(?i)\+?\d+ *[kmgt]?|infinite|infinity"),
    Setting(SERVER_USER_SETTING, "the model server's user (root keeps root)", "byoc",
            choices=("byoc", "root")),
    _DEVICE,
    Setting(PRECISION_SETTING, "auto: bf16 where native and the model's measured agreement clears the bar, "
            "else on a CPU int8 where its agreement does, else fp32; fp32; bf16; int8 (CPU)", "auto",
            choices=PRECISION_CHOICES),
    Setting(MIN_AGREEMENT_SETTING, "percent of validation images on which bf16 (or int8) must agree with fp32 "
            "for auto to serve it", f"{DEFAULT_MIN_AGREEMENT_PERCENT:g}", minimum=0.0, maximum=100),
    Setting(CPU_GRAPH_SETTING, "onednn: on a CPU, the model traced, frozen and fused by oneDNN Graph; eager",
            "onednn (eager with multi-model)", choices=CPU_GRAPH_CHOICES),
    Setting(BATCH_SETTING, "true in a batch transform job", "", set_by="SageMaker, in batch transform jobs"),
    Setting(BATCH_MAX_PAYLOAD_SETTING, "a transform job's MaxPayloadInMB (0: chunked, up to 100)", "", minimum=0,
            maximum=MAX_BATCH_PAYLOAD_MB,
            set_by="SageMaker, from the transform job's MaxPayloadInMB (byoc-cloud transform --max-payload-mb)"),
    Setting(BATCH_STRATEGY_SETTING, "SINGLE_RECORD or MULTI_RECORD", "",
            set_by="SageMaker, from the transform job's BatchStrategy (byoc-cloud transform --batch-strategy)"),
    Setting(BATCH_CONCURRENCY_SETTING, "a transform job's MaxConcurrentTransforms", "", minimum=0,
            set_by="SageMaker, from the transform job's MaxConcurrentTransforms "
                   "(byoc-cloud transform --max-concurrent-transforms)"),
)}
TRAINING_SETTINGS = {s.name: s for s in (
    _DEVICE,
    Setting(THREADS_SETTING, "torch threads in each training process", "cores (per process)", minimum=1),
    Setting(NCCL_DEBUG_SETTING, "NCCL's log level (several GPUs or hosts)", "WARN",
            choices=("version", "warn", "info", "trace")),
)}


# --- hosting modes -------------------------------------------------------------------------
# How SageMaker runs the serving image, and the largest request each mode takes (SageMaker's limits):
# real-time InvokeEndpoint 6 MiB (botocore's Body maximum), serverless 4 MB (its quota; decimal, to
# be safe), async 1 GB (the input object in S3), batch transform MaxPayloadInMB up to 100 MB.
HOSTING_MODES = ("realtime", "async", "serverless", "batch")
MAX_REQUEST_BYTES = {"realtime": 6 * 1024 * 1024, "serverless": 4 * 1000 * 1000, "async": 1000 ** 3,
                     "batch": MAX_BATCH_PAYLOAD_MB * 1024 * 1024}


# --- requests to the endpoint ------------------------------------------------------------
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
# One JSON object per line, answered line by line: batch transform's SplitType=Line with
# BatchStrategy=MultiRecord sends many lines in one request (under application/json too).
JSON_LINES_TYPE = "application/jsonlines"
NPY_TYPE = "application/x-npy"
MULTIPART_TYPE = "multipart/form-data"  # one part holding an image (curl -F image=@dog.jpg)
CONTENT_TYPES = (*IMAGE_TYPES, JSON_TYPE, JSON_LINES_TYPE, NPY_TYPE, MULTIPART_TYPE)
# Other names senders use (as Content-Type or in Accept): JSON Lines' unregistered ones, and the
# image types' that clients still write (image/jpg for .jpg files; old browsers' pjpeg and x-png).
CONTENT_TYPE_ALIASES = {"application/jsonl": JSON_LINES_TYPE, "application/x-jsonlines": JSON_LINES_TYPE,
                        "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
# What arrives when the sender named no type: ContentType is optional in InvokeEndpoint(Async) and in
# a transform job (SDK local mode then sends no header), and S3 and boto3 label an object uploaded
# without one binary/octet-stream, and the SDK's DataSerializer (v2 and v3; what SDK v3's SchemaBuilder
# picks for a bytes sample, as ModelBuilder's deploy() pings with it) says file-path/raw-bytes. Such a
# body is read as JSON if it opens with '{', else as an image.
UNTYPED = ("", "application/octet-stream", "binary/octet-stream", "file-path/raw-bytes")
RESPONSE_TYPE = JSON_TYPE  # JSON Lines requests are answered in JSON Lines
# InvokeEndpoint's CustomAttributes reach the container as this header; `top_k=N` in it.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
DEFAULT_TOP_K = 5


def top_k_attribute(k: int) -> str:
    """The CustomAttributes value that asks for the k best classes."""
    return f"top_k={k}"


# Base64 as clients write an image: a browser's data URL (FileReader, canvas.toDataURL), lines
# wrapped at 76 characters (the base64 tool, MIME encoders), the URL-safe alphabet, no padding.
DATA_URL_PREFIX = re.compile(r"data:[^,;]*(;[^,;=]+=[^,;]*)*;base64,", re.IGNORECASE)
BASE64_WHITESPACE = str.maketrans("", "", " \t\r\n")
URL_SAFE_TO_STANDARD = str.maketrans("-_", "+/")


def base64_bytes(text: str) -> bytes:
    """The bytes of base64 `text` in any of those forms; ValueError saying why it is not base64."""
    prefix = DATA_URL_PREFIX.match(text)
    if prefix:
        text = text[prefix.end():]
    elif text[:5].lower() == "data:":
        raise ValueError("is a data: URL that is not base64 (it needs ';base64,' before the data)")
    text = text.translate(BASE64_WHITESPACE)
    if ("-" in text or "_" in text) and not ("+" in text or "/" in text):
        text = text.translate(URL_SAFE_TO_STANDARD)
    text = text.rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (A-Z a-z 0-9 + / or the URL-safe - _, optionally as a data: URL)") from None


# InvokeEndpoint's largest request body by endpoint type: real-time endpoints take 6 MB (botocore's
# model caps Body at 6 MiB), serverless ones 4 MB (SageMaker's serverless quota; decimal, to be
# safe). The endpoint's Lambda refuses larger images; `byoc-cloud lambda deploy` sets its type.
ENDPOINT_TYPES = ("realtime", "serverless")
MAX_INVOKE_BYTES = {kind: MAX_REQUEST_BYTES[kind] for kind in ENDPOINT_TYPES}


def main(argv: list[str] | None = None) -> None:
    """`python -m byoc.contract hyperparameters '{"epochs": 2}'`: the encoding, for shell scripts."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "hyperparameters":
        raise SystemExit("usage: python -m byoc.contract hyperparameters JSON_OBJECT")
    print(json.dumps(encode_hyperparameters(json.loads(args[1]))))


if __name__ == "__main__":
    main()
