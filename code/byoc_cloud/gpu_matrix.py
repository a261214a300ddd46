"""Which SageMaker GPU instances an image can run on, and the AMI the kit picks for them.

For each GPU family users pick for this job: the GPU and its compute capability (NVIDIA), and the
NVIDIA driver SageMaker gives by default for real-time and async endpoints and for batch transform
(SageMaker Developer Guide, "GPU drivers" for inference, June 2023 to 2025 editions; the
InferenceAmiVersion and TransformAmiVersion API references). SageMaker does not document the
driver of training hosts, and CreateTrainingJob has no AMI choice: the training image checks the
driver itself when the job starts (byoc.cuda) and fails in its first seconds with the reason.

plan() turns an image's build facts (its labels) and an instance type into a verdict: refusals
(an architecture the image has no kernels for, a driver too old with no AMI that fixes it), the
AMI override to send, and warnings. It is pure: the README's matrix and the tests come from it.
"""
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
    Family("ml.p4d", "NVIDIA A100", (8, 0), 470, 470),
    Family("ml.p4de", "NVIDIA A100", (8, 0), 470, 470),
    Family("ml.p5", "NVIDIA H100", (9, 0), 535, None),
    Family("ml.p5e", "NVIDIA H200", (9, 0), 550, None),
    Family("ml.p5en", "NVIDIA H200", (9, 0), 550, None),
)}
# NVIDIA GPU families the kit has no row for: refused rather than guessed at.
OTHER_GPU_FAMILIES = ("ml.p2", "ml.p6", "ml.g3", "ml.g4ad", "ml.g7")
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


def plan(instance_type: str | None, mode: str, image: ImageFacts) -> Verdict:
    verdict = Verdict()
    if mode == "serverless":
        _size_plan(image, verdict)
        return verdict
    family = FAMILIES.get(family_of(instance_type))
    if family is None:
        if family_of(instance_type) in OTHER_GPU_FAMILIES:
            verdict.refusals.append(f"{instance_type} is a GPU instance the kit has no row for (README: GPUs on "
                                    "SageMaker): check its driver and GPU yourself, then pass --skip-check.")
        elif image.cuda and mode != "training":
            verdict.warnings.append(f"{instance_type} has no NVIDIA GPU: the image runs its model on the CPU, but "
                                    f"every instance pulls its CUDA {image.cuda} libraries{_size_text(image)}.")
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


def markdown_table(image: ImageFacts) -> str:
    """The README's matrix for an image: per family, whether its kernels cover the GPU and what the kit
    sends for each hosting mode ("default": SageMaker's default driver already runs it)."""
    rows = ["| family | GPU | arch | covered | hosting default driver | real-time, async | "
            "batch transform default driver | batch transform |", "|---|---|---|---|---|---|---|---|"]
    for family in FAMILIES.values():
        instance = f"{family.name}.xlarge"
        covered = archs_cover(image.archs, family.capability)
        rows.append(f"| {family.name} | {family.gpu} | sm_{family.capability[0]}{family.capability[1]} | "
                    f"{'yes' if covered else 'no'} | {family.hosting_driver or 'not documented'} | "
                    f"{_cell(plan(instance, 'realtime', image))} | {family.batch_driver or 'not documented'} | "
                    f"{_cell(plan(instance, 'batch', image))} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m byoc_cloud.gpu_matrix [FACTS_JSON]: the table for make build's facts
    import json
    import sys
    from pathlib import Path

    found = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "build/image-facts/facts.json").read_text())
    sys.stdout.write(markdown_table(ImageFacts("the built images", found["cuda"], tuple(found["archs"]),
                                               found["compat"])))
