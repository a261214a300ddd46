"""The GPU compatibility matrix (byoc_cloud.gpu_matrix) for the build this kit ships and for others."""
from pathlib import Path

import pytest

from byoc import cuda
from byoc_cloud.arguments import INSTANCE_SHAPES, offered, offered_families
from byoc_cloud.gpu_matrix import FAMILIES, INFERENCE_AMIS, ImageFacts, family_of, markdown_table, plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> ImageFacts:
    """The facts of the torch in uv.lock, which both images carry: the dev environment has the same one."""
    found = cuda.facts()
    return ImageFacts("uv.lock's torch", found["cuda"], tuple(found["archs"]), found["compat"])


def cuda13() -> ImageFacts:
    return ImageFacts("torch 2.13", "13.0", ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["training", "realtime", "async", "batch"])
def test_every_listed_family_runs_the_shipped_build_in_every_mode(shipped, family, mode):
    verdict = plan(f"{family}.2xlarge", mode, shipped)
    assert verdict.ok, verdict.refusals
    default = FAMILIES[family].batch_driver if mode == "batch" else FAMILIES[family].hosting_driver
    if mode == "training":
        assert verdict.ami == {}  # CreateTrainingJob has no AMI choice
    elif default is not None and default >= 525:
        assert verdict.ami == {}
    else:  # SageMaker's 470 default, or an undocumented one: the override with driver 535
        key = "TransformAmiVersion" if mode == "batch" else "InferenceAmiVersion"
        expected = "al2-ami-sagemaker-batch-gpu-535" if mode == "batch" else "al2-ami-sagemaker-inference-gpu-2-1"
        assert verdict.ami == {key: expected}


def test_a_cuda_13_build_is_refused_where_it_cannot_run():
    assert "compute capability 7.0" in plan("ml.p3.2xlarge", "realtime", cuda13()).refusals[0]  # no sm_70
    batch = plan("ml.g5.xlarge", "batch", cuda13())
    assert not batch.ok and "no TransformAmiVersion brings R580" in batch.refusals[0]
    assert plan("ml.g5.xlarge", "realtime", cuda13()).ami == {"InferenceAmiVersion": INFERENCE_AMIS[-1][0]}


def test_cpu_instances_gpu_families_without_a_row_and_cpu_builds(shipped):
    cpu = plan("ml.m5.xlarge", "realtime", ImageFacts("x", "12.8", shipped.archs, size_bytes=8 * 10**9))
    assert cpu.ok and "no NVIDIA GPU" in cpu.warnings[0] and "8.0 GB" in cpu.warnings[0]
    assert plan("ml.c5.xlarge", "training", shipped).warnings == []
    assert not plan("ml.p2.xlarge", "realtime", shipped).ok
    assert "CPU-only build" in plan("ml.g5.xlarge", "realtime", ImageFacts("cpu torch")).refusals[0]


def test_serverless_takes_images_up_to_10_gb():
    assert plan(None, "serverless", ImageFacts("x", "12.8", size_bytes=9 * 10**9)).ok
    assert "up to 10 GB" in plan(None, "serverless", ImageFacts("x", "12.8", size_bytes=11 * 10**9)).refusals[0]


def test_the_readme_matrix_is_the_shipped_builds(shipped):
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- gpu matrix: begin -->\n", 1)[1].split("<!-- gpu matrix: end -->", 1)[0]
    assert table == markdown_table(shipped, offered_families()), \
        "README.md: paste `python -m byoc_cloud.gpu_matrix` between the markers"


def test_the_matrix_says_not_offered_where_sagemaker_has_no_such_type(shipped):
    """Batch transform has no ml.p4d or ml.p5 types, endpoints no ml.p3dn (botocore's enums): the table
    must not promise an AMI there."""
    for line in markdown_table(shipped, offered_families()).splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        family, realtime, batch = cells[0], cells[5], cells[7]
        assert (realtime == "not offered") == (family not in {family_of(t) for t in offered("realtime")}), line
        assert (batch == "not offered") == (family not in {family_of(t) for t in offered("batch")}), line


def every_offered_type():
    return sorted({(mode, t) for mode in INSTANCE_SHAPES for t in offered(mode)})


@pytest.mark.parametrize("mode, instance_type", [(m, t) for m, t in every_offered_type()
                                                 if t.split(".")[1][0] in "gp" and family_of(t) not in FAMILIES])
def test_gpu_families_without_a_row_are_refused_not_taken_for_cpus(shipped, mode, instance_type):
    """ml.p6-b200, ml.p6e-gb200, ml.g7e...: every g or p type botocore offers that the kit has no row for."""
    verdict = plan(instance_type, mode, shipped)
    assert not verdict.ok and any("a GPU instance the kit has no row for" in r for r in verdict.refusals), verdict
    assert not any("no NVIDIA GPU" in w for w in verdict.warnings)


def test_p3dn_trains_on_v100s():
    """ml.p3dn (V100, training only) was taken for a CPU: a build without sm_70 would start and fail there."""
    assert "NVIDIA V100, sm_70: covered" in plan("ml.p3dn.24xlarge", "training", ImageFacts(
        "x", "12.8", ("sm_70", "sm_80"))).notes[0]
    assert "compute capability 7.0" in plan("ml.p3dn.24xlarge", "training", cuda13()).refusals[0]


@pytest.mark.parametrize("instance_type, processor", [
    ("ml.c7g.xlarge", "AWS Graviton"), ("ml.m6g.large", "AWS Graviton"), ("ml.r7gd.xlarge", "AWS Graviton"),
    ("ml.c6gn.2xlarge", "AWS Graviton"), ("ml.m8g.xlarge", "AWS Graviton"), ("ml.p6e-gb200.36xlarge", "NVIDIA Grace")])
def test_arm64_hosts_refuse_an_amd64_image(instance_type, processor):
    amd64 = ImageFacts("x", "12.8", ("sm_100",), platform="amd64")
    verdict = plan(instance_type, "realtime", amd64)
    assert f"{instance_type} has {processor} (arm64) processors, and the image is built for linux/amd64" \
        in verdict.refusals[0], verdict
    if processor == "AWS Graviton":  # an arm64 build runs there, on the CPU
        assert plan(instance_type, "realtime", ImageFacts("x", "", platform="arm64")).ok


@pytest.mark.parametrize("instance_type", ["ml.c7i-flex.large", "ml.c6in.xlarge", "ml.m5d.large", "ml.g4dn.xlarge",
                                           "ml.trn1n.32xlarge", "ml.inf2.xlarge", "ml.p6-b200.48xlarge"])
def test_x86_hosts_refuse_an_arm64_image_and_take_an_amd64_one(instance_type):
    archs = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
    arm64 = plan(instance_type, "realtime", ImageFacts("x", "12.8", archs, platform="arm64"))
    assert "x86 (amd64) processors, and the image is built for linux/arm64" in arm64.refusals[0]
    amd64 = plan(instance_type, "realtime", ImageFacts("x", "12.8", archs, platform="amd64"))
    assert not any("linux/" in r for r in amd64.refusals)
    assert not any("linux/" in r for r in plan(instance_type, "realtime", ImageFacts("x", "12.8", archs)).refusals)


@pytest.mark.parametrize("instance_type, mode, accelerator", [
    ("ml.trn1.32xlarge", "training", "AWS Trainium"), ("ml.trn2.48xlarge", "training", "AWS Trainium"),
    ("ml.inf2.xlarge", "realtime", "AWS Inferentia"), ("ml.inf1.xlarge", "async", "AWS Inferentia"),
    ("ml.trn1.2xlarge", "batch", "AWS Trainium"), ("ml.dl1.24xlarge", "realtime", "Habana Gaudi")])
def test_other_accelerators_are_named_in_every_mode(shipped, instance_type, mode, accelerator):
    """Training on a Trainium host said nothing: the job would train on its CPUs at accelerator prices."""
    verdict = plan(instance_type, mode, shipped)
    assert verdict.ok and f"{instance_type} has {accelerator} accelerators, not NVIDIA GPUs" in verdict.warnings[0]
