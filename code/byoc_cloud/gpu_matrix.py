"""Which SageMaker GPU instances an image can run on, and the AMI the kit picks for them.

For each GPU family users pick for this job: the GPU and its compute capability (NVIDIA), and the
NVIDIA driver SageMaker gives by default for real-time and async endpoints and for batch transform
(SageMaker Developer Guide, "GPU drivers" for inference, June 2023 to 2025 editions; the
InferenceAmiVersion and TransformAmiVersion API references). SageMaker does not document the
driver of training hosts, and CreateTrainingJob has no AMI choice: the training image checks the
driver itself when the job starts (byoc.cuda) and fails in its first seconds with the reason.

Families without a row are judged by their name (EC2's "instance type naming conventions": the
series, the generation, then letters for the processor and options, then a hyphenated variant), so
that families botocore gains are never taken for plain CPUs: a g or p series is an NVIDIA GPU the
kit has no row for (refused, not guessed at: AWS's driver table does not list it); inf, trn and
dl carry accelerators this torch cannot use; a "g" among the processor letters (c7g, m6gd, r7gd)
is AWS Graviton and a Grace variant (p6e-gb200) NVIDIA Grace: arm64 hosts, where an amd64 image
cannot start ("bring your own containers compatible with Arm v8.2": AWS's post on
SageMaker inference on Graviton, November 2022).

plan() turns an image's build facts (its labels, its platform) and an instance type into a
verdict: refusals (a CPU or GPU architecture the image has no code for, a driver too old with no
AMI that fixes it), the AMI override to send, and warnings. It is pure: the README's matrix and the
tests come from it; which types each mode offers is botocore's (byoc_cloud.arguments.offered).
"""
import re
from dataclasses import dataclass, field

from byoc.contract import MIN_DRIVER_FOR_CUDA, archs_cover

MODES = ("training", "realtime", "async", "batch", "serverless")
SERVERLESS_IMAGE_LIMIT = 10 * 10**9  # "container image size: 10 GB" (serverless endpoints)


@dataclass(frozen=True)
class Family:
    name: str
    gpu: str
    capability: tuple[int, int]
    hosting_driver: int | None  # real-time and async default (None: not in AWS's table)
    batch_driver: int | None  # batch transform default (None: not in AWS's table)


FAMILIES = {f.name: f for f in (
    Family("ml.g4dn", "NVIDIA T4", (7, 5), 470, 470),
    Family("ml.g5", "NVIDIA A10G", (8, 6), 470, 470),
    Family("ml.g6", "NVIDIA L4", (8, 9), 535, None),
    Family("ml.g6e", "NVIDIA L40S", (8, 9), None, None),
    Family("ml.p3", "NVIDIA V100", (7, 0), 470, 470),
    Family("ml.p3dn", "NVIDIA V100", (7, 0), None, None),  # training only
    Family("ml.p4d", "NVIDIA A100", (8, 0), 470, 470),
    Family("ml.p4de", "NVIDIA A100", (8, 0), 470, 470),
    Family("ml.p5", "NVIDIA H100", (9, 0), 535, None),
    Family("ml.p5e", "NVIDIA H200", (9, 0), 550, None),
    Family("ml.p5en", "NVIDIA H200", (9, 0), 550, None),
)}
# ml.SERIES GENERATION PROCESSOR-AND-OPTIONS [-VARIANT] .SIZE: ml.g4dn.xlarge, ml.c7i-flex.large,
# ml.p6e-gb200.36xlarge, ml.inf2.xlarge.
NAME = re.compile(r"ml\.(?P<series>[a-z]+?)(?P<generation>\d+)(?P<options>[a-z]*)(?:-(?P<variant>[a-z0-9-]+))?"
                  r"\.(?P<size>[a-z0-9]+)")
GPU_SERIES = ("g", "p")  # NVIDIA GPUs, bar ml.g4ad (AMD), which SageMaker does not offer
OTHER_ACCELERATORS = {"inf": "AWS Inferentia", "trn": "AWS Trainium", "dl": "Habana Gaudi"}
# The overrides SageMaker offers, by the driver they bring (oldest first): the kit picks the first
# that runs the image. "-1" variants leave CUDA-compat mounting to the container (byoc.cuda does it).
INFERENCE_AMIS = (("al2-ami-sagemaker-inference-gpu-2-1", 535), ("al2-ami-sagemaker-inference-gpu-3-1", 550),
                  ("al2023-ami-sagemaker-inference-gpu-4-1", 580))
BATCH_AMIS = (("al2-ami-sagemaker-batch-gpu-535", 535),)


@dataclass(frozen=True)
class ImageFacts:
    """What an image says about itself (its byoc.* labels) and its size."""

    reference: str
    cuda: str = ""  # "12.8"; "" for a CPU-only torch
    archs: tuple[str, ...] = ()
    compat: str = ""  # the forward-compatibility libraries' driver version, or ""
    size_bytes: int | None = None
    size_is_compressed: bool = False  # ECR reports compressed sizes, the engine unpacked ones
    platform: str = ""  # the image config's architecture ("amd64", "arm64"); "" when not known


@dataclass
class Verdict:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ami: dict[str, str] = field(default_factory=dict)  # {"InferenceAmiVersion": ...} or {"TransformAmiVersion": ...}

    @property
    def ok(self) -> bool:
        return not self.refusals

    def report(self, what: str) -> str:
        lines = [f"check {what}: {'OK' if self.ok else 'REFUSED'}"]
        lines += [f"  refused: {r}" for r in self.refusals] + [f"  warning: {w}" for w in self.warnings]
        lines += [f"  {n}" for n in self.notes]
        lines += [f"  {key}: {value}" for key, value in self.ami.items()]
        return "\n".join(lines)


def family_of(instance_type: str) -> str:
    """'ml.g5.2xlarge' -> 'ml.g5'."""
    return ".".join(instance_type.split(".")[:2])


def _name(instance_type: str) -> dict[str, str]:
    found = NAME.fullmatch(instance_type)
    return found.groupdict(default="") if found else {"series": "", "options": "", "variant": ""}


def has_nvidia_gpu(instance_type: str) -> bool:
    """A family with a row, or one of a GPU series (ml.p6-b200, ml.g7e) that has none yet."""
    return family_of(instance_type) in FAMILIES or _name(instance_type)["series"] in GPU_SERIES


def arm_processor(instance_type: str) -> str | None:
    """AWS Graviton (a g among the processor letters), NVIDIA Grace (GB200, GH200), or None (x86)."""
    name = _name(instance_type)
    return "NVIDIA Grace" if name["variant"].startswith("g") else "AWS Graviton" if "g" in name["options"] else None


def host_platform(instance_type: str) -> str:
    return "arm64" if arm_processor(instance_type) else "amd64"


def minimum_driver(image: ImageFacts) -> int | None:
    major = int(image.cuda.split(".")[0]) if image.cuda else None
    return MIN_DRIVER_FOR_CUDA.get(major, 10**6) if major else None


def _driver_plan(family: Family, mode: str, image: ImageFacts, verdict: Verdict) -> None:
    """Whether the default driver runs the image, else which AMI override does."""
    needed = minimum_driver(image)
    default, amis, key = ((family.batch_driver, BATCH_AMIS, "TransformAmiVersion") if mode == "batch"
                          else (family.hosting_driver, INFERENCE_AMIS, "InferenceAmiVersion"))
    if default is not None and default >= needed:
        verdict.notes.append(f"SageMaker's default driver on {family.name} ({default}) runs CUDA {image.cuda}")
        return
    pick = next(((ami, driver) for ami, driver in amis if driver >= needed), None)
    said = f"driver {default}" if default else "a driver AWS does not document"
    if pick is None:
        verdict.refusals.append(f"{family.name} {mode} hosts get {said} by default, and no {key} brings R{needed} "
                                f"or newer, which this image's CUDA {image.cuda} needs.")
        return
    verdict.ami[key] = pick[0]
    verdict.notes.append(f"SageMaker's default on {family.name} is {said}; CUDA {image.cuda} needs R{needed}+: "
                         f"{key} {pick[0]} (driver {pick[1]})")


def _platform_plan(instance_type: str, image: ImageFacts, verdict: Verdict) -> None:
    host, processor = host_platform(instance_type), arm_processor(instance_type)
    if image.platform and image.platform != host:
        where = f"{processor} (arm64) processors" if processor else "x86 (amd64) processors"
        verdict.refusals.append(f"{instance_type} has {where}, and the image is built for linux/{image.platform}: "
                                "it cannot start there.")


def _no_row_plan(instance_type: str, mode: str, image: ImageFacts, verdict: Verdict) -> None:
    """Families the kit has no GPU row for: GPUs it will not guess at, other accelerators, plain CPUs."""
    series = _name(instance_type)["series"]
    if series in GPU_SERIES:
        verdict.refusals.append(f"{instance_type} is a GPU instance the kit has no row for (README: GPUs on "
                                "SageMaker): check its driver and GPU yourself, then pass --skip-check.")
    elif series in OTHER_ACCELERATORS:
        verdict.warnings.append(f"{instance_type} has {OTHER_ACCELERATORS[series]} accelerators, not NVIDIA GPUs: "
                                "the image's torch cannot use them and runs on the instance's CPUs.")
    elif image.cuda and mode != "training":
        verdict.warnings.append(f"{instance_type} has no NVIDIA GPU: the image runs its model on the CPU, but "
                                f"every instance pulls its CUDA {image.cuda} libraries{_size_text(image)}.")


def plan(instance_type: str | None, mode: str, image: ImageFacts) -> Verdict:
    verdict = Verdict()
    if mode == "serverless":
        _size_plan(image, verdict)
        return verdict
    _platform_plan(instance_type, image, verdict)
    family = FAMILIES.get(family_of(instance_type))
    if family is None:
        _no_row_plan(instance_type, mode, image, verdict)
        return verdict
    if not image.cuda:
        verdict.refusals.append(f"{instance_type} has {family.gpu} GPUs but the image's torch is a CPU-only build.")
        return verdict
    if not archs_cover(image.archs, family.capability):
        major, minor = family.capability
        verdict.refusals.append(f"{family.gpu} ({instance_type}) has compute capability {major}.{minor} (sm_{major}"
                                f"{minor}); the image's torch has kernels for {', '.join(image.archs) or 'none'}.")
    if mode == "training":
        verdict.notes.append(f"{family.gpu}, sm_{family.capability[0]}{family.capability[1]}: covered. SageMaker "
                             "does not document training hosts' drivers; the job checks it when it starts.")
    else:
        _driver_plan(family, mode, image, verdict)
    return verdict


def _size_text(image: ImageFacts) -> str:
    if image.size_bytes is None:
        return ""
    return f" ({image.size_bytes / 1e9:.1f} GB{' compressed' if image.size_is_compressed else ''})"


def _size_plan(image: ImageFacts, verdict: Verdict) -> None:
    if image.size_bytes is not None and image.size_bytes > SERVERLESS_IMAGE_LIMIT:
        verdict.refusals.append(f"the image is {image.size_bytes / 1e9:.1f} GB; serverless endpoints take images "
                                f"up to {SERVERLESS_IMAGE_LIMIT / 1e9:.0f} GB.")
    if image.cuda:
        verdict.notes.append("serverless endpoints have no GPUs: the image serves on the CPU")


def _cell(verdict: Verdict) -> str:
    if not verdict.ok:
        return "refused: " + " ".join(verdict.refusals)
    return next(iter(verdict.ami.values()), "default")


def markdown_table(image: ImageFacts, offered: dict[str, set[str]]) -> str:
    """The README's matrix for an image: per family, whether its kernels cover the GPU and what the kit
    sends for each hosting mode ("default": SageMaker's default driver already runs it). offered: the
    families each mode takes (byoc_cloud.arguments.offered_families)."""
    rows = ["| family | GPU | arch | covered | hosting default driver | real-time, async | "
            "batch transform default driver | batch transform |", "|---|---|---|---|---|---|---|---|"]
    for family in FAMILIES.values():
        instance = f"{family.name}.xlarge"
        covered = archs_cover(image.archs, family.capability)
        realtime, batch = ((_cell(plan(instance, mode, image)) if family.name in offered[mode] else "not offered")
                           for mode in ("realtime", "batch"))
        rows.append(f"| {family.name} | {family.gpu} | sm_{family.capability[0]}{family.capability[1]} | "
                    f"{'yes' if covered else 'no'} | {family.hosting_driver or 'not documented'} | "
                    f"{realtime} | {family.batch_driver or 'not documented'} | {batch} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m byoc_cloud.gpu_matrix [FACTS_JSON]: the table for make build's facts
    import json
    import sys
    from pathlib import Path

    from byoc_cloud.arguments import offered_families

    found = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "build/image-facts/facts.json").read_text())
    sys.stdout.write(markdown_table(ImageFacts("the built images", found["cuda"], tuple(found["archs"]),
                                               found["compat"]), offered_families()))
