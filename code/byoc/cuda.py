"""The host's NVIDIA driver and what this image's torch needs of it, decided before CUDA is used.

This image's torch is built for one CUDA version (the byoc.cuda.version label). It runs
- on any driver of that CUDA major from contract.MIN_DRIVER_FOR_CUDA on (R525 for CUDA 12:
  minor-version compatibility; the one loss, PTX JIT, does not matter: torch ships no PTX);
- on an older driver only with CUDA's forward-compatibility libraries (libcuda.so.<driver> in
  /usr/local/cuda/compat: the nvidia/cuda base images carry them, the offline base does not;
  data-centre GPUs only), put first on LD_LIBRARY_PATH by whoever starts the process that uses
  CUDA, since NVIDIA's container toolkit stopped doing that in 1.17.4;
- not at all on a GPU whose architecture its kernels do not cover.

choose() decides from those facts and is pure, so the decision is tested against any driver;
look() gathers them without torch; check_torch() confirms the decision once torch is imported.
Nothing falls back to the CPU silently: BYOC_DEVICE=cpu is how to ask for it.

`python -m byoc.cuda facts` prints the torch build's facts (run in the image build);
`python -m byoc.cuda build-flags FACTS_JSON` turns them into labels and build arguments.
"""
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from byoc import contract

COMPAT_DIR = Path(os.environ.get("BYOC_CUDA_COMPAT_DIR", "/usr/local/cuda/compat"))
DRIVER_FILE = Path("/proc/driver/nvidia/version")
# What to change when the host's driver is too old, by what runs in the container.
FIXES = {
    "training": "Train on an instance type whose driver is R{minimum} or newer, build the image on an nvidia/cuda "
                "base that carries the CUDA forward-compatibility libraries (they serve data-centre GPUs on R470), "
                "or set BYOC_DEVICE=cpu to train on the CPU on purpose.",
    "serving": "On SageMaker, deploy with InferenceAmiVersion al2-ami-sagemaker-inference-gpu-2-1 (driver 535) "
               "for real-time and async endpoints, or TransformAmiVersion al2-ami-sagemaker-batch-gpu-535 for batch "
               "transform: `byoc-cloud deploy` and `byoc-cloud check` pick these for you. Elsewhere, update the "
               "driver, or set BYOC_DEVICE=cpu to serve on the CPU on purpose.",
}


class CudaUnusable(Exception):
    """The GPUs cannot be used as asked: one paragraph with the reason and the fix."""


@dataclass(frozen=True)
class Host:
    gpus: int
    driver: tuple[int, ...] | None  # the kernel module's version, e.g. (535, 54, 3)
    compat: tuple[int, ...] | None  # the image's forward-compatibility libraries' driver version


@dataclass(frozen=True)
class Choice:
    device: str  # "cuda" or "cpu"
    library_path: str | None  # to put first on LD_LIBRARY_PATH (forward compatibility), else None
    reason: str  # one line for the log


def shown(version: tuple[int, ...] | None) -> str:
    """(12, 8) -> '12.8'."""
    return ".".join(map(str, version)) if version else "unknown"


def driver_text(version: tuple[int, ...] | None) -> str:
    """(470, 57, 2) -> '470.57.02', as NVIDIA writes driver versions."""
    return ".".join([str(version[0]), *(f"{part:02d}" for part in version[1:])]) if version else "unknown"


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.search(r"\d+(?:\.\d+)+|\d+", text or "")
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def _nvidia_smi(*args: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def host_driver() -> tuple[int, ...] | None:
    try:  # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Tue Jun  6 ..."
        match = re.search(r"Kernel Module\s+([\d.]+)", DRIVER_FILE.read_text())
        if match:
            return parse_version(match.group(1))
    except OSError:
        pass
    return parse_version(_nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader").split("\n")[0])


def gpu_count() -> int:
    """GPUs the container was given: their device files, else what nvidia-smi lists."""
    devices = [name for name in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", name)] if os.path.isdir("/dev") else []
    return len(devices) or sum(line.startswith("GPU ") for line in _nvidia_smi("-L").splitlines())


def compat_driver(directory: Path = COMPAT_DIR) -> tuple[int, ...] | None:
    """The driver version of the forward-compatibility libcuda in `directory` (libcuda.so.570.124.06)."""
    versions = [parse_version(p.name[len("libcuda.so."):]) for p in directory.glob("libcuda.so.*.*")]
    return max(filter(None, versions), default=None)


def look() -> Host:
    gpus = gpu_count()
    return Host(gpus, host_driver() if gpus else None, compat_driver() if gpus else None)


def image_cuda() -> tuple[int, ...] | None:
    """The CUDA version this image's torch is built for: the build's label, else torch itself."""
    text = os.environ.get("BYOC_CUDA_VERSION")
    if text is None:
        import torch

        text = torch.version.cuda or ""
    return parse_version(text)


def setting() -> str:
    value = os.environ.get(contract.DEVICE_SETTING, "").strip().lower() or "auto"
    if value not in contract.DEVICE_CHOICES:
        raise CudaUnusable(f"{contract.DEVICE_SETTING}={value!r} is not a device choice: use one of "
                           f"{', '.join(contract.DEVICE_CHOICES)}.")
    return value


def choose(host: Host, cuda: tuple[int, ...] | None, device: str, job: str) -> Choice:
    """Where this container runs its model, and what it must set up for that (pure: facts in)."""
    if device == "cpu":
        unused = f"; {host.gpus} GPU(s) left unused" if host.gpus else ""
        return Choice("cpu", None, f"{contract.DEVICE_SETTING}=cpu: running on the CPU on purpose{unused}")
    if not host.gpus:
        if device == "cuda":
            raise CudaUnusable(f"{contract.DEVICE_SETTING}=cuda asks for a GPU, but the container has no NVIDIA GPU "
                               "(no /dev/nvidia* devices, nothing listed by nvidia-smi). Use a GPU instance type, "
                               "start the container with the NVIDIA runtime (--gpus all), or set "
                               f"{contract.DEVICE_SETTING}=auto.")
        return Choice("cpu", None, "no NVIDIA GPU in this container: running on the CPU")
    if not cuda:
        raise CudaUnusable(f"The container has {host.gpus} NVIDIA GPU(s) but this image's torch is a CPU-only build. "
                           f"Build the image from uv.lock's CUDA torch, or set {contract.DEVICE_SETTING}=cpu.")
    if host.driver is None:
        raise CudaUnusable(f"The container has {host.gpus} NVIDIA GPU(s) but no readable driver version "
                           f"({DRIVER_FILE} and nvidia-smi both missing): was it started without the NVIDIA "
                           "container runtime's utility capability (NVIDIA_DRIVER_CAPABILITIES=compute,utility)?")
    minimum = contract.MIN_DRIVER_FOR_CUDA.get(cuda[0], 10**6)
    if host.driver[0] >= minimum:
        return Choice("cuda", None, f"{host.gpus} GPU(s), driver {driver_text(host.driver)}: runs this image's CUDA "
                                    f"{shown(cuda)} (CUDA {cuda[0]} needs R{minimum} or newer)")
    if host.compat and host.compat > host.driver:
        return Choice("cuda", str(COMPAT_DIR),
                      f"{host.gpus} GPU(s), driver {driver_text(host.driver)} is older than CUDA {shown(cuda)} needs "
                      f"(R{minimum}+): using the CUDA forward-compatibility libraries {driver_text(host.compat)} "
                      f"from {COMPAT_DIR}")
    raise CudaUnusable(f"This image's torch needs CUDA {shown(cuda)}, which runs on NVIDIA drivers R{minimum} and "
                       f"newer, but the host's driver is {driver_text(host.driver)} and the image has no CUDA "
                       f"forward-compatibility libraries newer than it (in {COMPAT_DIR}). "
                       + FIXES[job].format(minimum=minimum))


def prepare(job: str) -> Choice:
    """The decision for this container; raises CudaUnusable with the reason and the fix."""
    device, host = setting(), look()
    return choose(host, image_cuda() if host.gpus and device != "cpu" else None, device, job)


def environment(choice: Choice, env: dict[str, str]) -> dict[str, str]:
    """`env` with the choice's libraries first on LD_LIBRARY_PATH (a copy; unchanged without them)."""
    if not choice.library_path:
        return dict(env)
    paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p and p != choice.library_path]
    return {**env, "LD_LIBRARY_PATH": ":".join([choice.library_path, *paths])}


def started_with(name: str) -> str:
    """An environment variable as this process was started with it (/proc/self/environ): the
    dynamic loader reads LD_LIBRARY_PATH then, and imports may change os.environ later (cv2 does)."""
    try:
        for item in Path("/proc/self/environ").read_bytes().split(b"\0"):
            key, _, value = item.partition(b"=")
            if key.decode(errors="replace") == name:
                return value.decode(errors="replace")
        return ""
    except OSError:
        return os.environ.get(name, "")


def needs_restart(choice: Choice) -> bool:
    """A process that did not start with the forward-compatibility libraries first on its library
    path must exec itself again to use them."""
    return bool(choice.library_path) and started_with("LD_LIBRARY_PATH").split(":")[0] != choice.library_path


def check_torch(choice: Choice, job: str) -> None:
    """After importing torch: the GPUs the choice counts on really work, and torch has kernels for them."""
    if choice.device != "cuda":
        return
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if not available:
        said = " ".join(" ".join(str(w.message).split()) for w in caught)[:300] or "no reason given"
        raise CudaUnusable(f"The container has NVIDIA GPU(s) ({choice.reason}), but torch cannot use them: "
                           f"torch.cuda.is_available() is False ({said}). "
                           + FIXES[job].format(minimum=contract.MIN_DRIVER_FOR_CUDA.get(12, 525)))
    archs = torch.cuda.get_arch_list()
    for index in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(index)
        if not contract.archs_cover(archs, (major, minor)):
            raise CudaUnusable(f"GPU {index} ({torch.cuda.get_device_name(index)}) has compute capability "
                               f"{major}.{minor}, and this image's torch has kernels for {', '.join(archs)} "
                               "only: pick an instance type whose GPU it covers (`byoc-cloud check`).")


def probe(choice: Choice, job: str) -> None:
    """check_torch in a fresh process with the choice's environment (the one the workers get)."""
    done = subprocess.run([sys.executable, "-m", "byoc.cuda", "check-torch", job], capture_output=True, text=True,
                          env=environment(choice, dict(os.environ, BYOC_DEVICE="cuda")), timeout=300)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit code {done.returncode}"]
        raise CudaUnusable(lines[-1])


# --- build time: the facts the labels carry ------------------------------------------------
def facts() -> dict:
    import torch

    cuda = torch.version.cuda or ""
    return {"torch": torch.__version__, "cuda": cuda,
            "archs": torch._C._cuda_getArchFlags().split() if cuda else [],  # compiled in: no GPU needed
            "compat": driver_text(compat_driver()) if compat_driver() else ""}


def requirement(found: dict) -> str:
    """NVIDIA_REQUIRE_CUDA for the NVIDIA runtime: alternatives separated by spaces, conditions of one
    alternative by commas. The CUDA version natively, or any driver of its minor-version range, or
    R470 data-centre GPUs where the forward-compatibility libraries are in the image."""
    cuda = parse_version(found["cuda"])
    if not cuda:
        return ""
    alternatives = [f"cuda>={shown(cuda[:2])}", f"driver>={contract.MIN_DRIVER_FOR_CUDA[cuda[0]]}"]
    if found["compat"]:
        alternatives += [f"brand={brand},driver>=470,driver<471" for brand in ("tesla", "nvidia", "unknown")]
    return " ".join(alternatives)


def build_flags(found: dict) -> list[str]:
    """docker buildx build arguments, one per line: the labels and the build arguments the final stages read."""
    labels = {contract.LABEL_TORCH: found["torch"], contract.LABEL_CUDA: found["cuda"],
              contract.LABEL_ARCHS: ",".join(found["archs"]), contract.LABEL_COMPAT: found["compat"]}
    flags = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    return flags + ["--build-arg", f"CUDA_VERSION={found['cuda']}",
                    "--build-arg", f"CUDA_REQUIREMENT={requirement(found)}"]


def main(argv: list[str]) -> None:
    if argv[:1] == ["facts"]:
        print(json.dumps(facts()))
    elif argv[:1] == ["build-flags"] and len(argv) == 2:
        print("\n".join(build_flags(json.loads(Path(argv[1]).read_text()))))
    elif argv[:1] == ["check-torch"] and len(argv) == 2:
        try:
            check_torch(prepare(argv[1]), argv[1])
        except CudaUnusable as error:
            raise SystemExit(str(error)) from None
    else:
        raise SystemExit("usage: python -m byoc.cuda facts | build-flags FACTS_JSON | check-torch JOB")


if __name__ == "__main__":
    main(sys.argv[1:])
