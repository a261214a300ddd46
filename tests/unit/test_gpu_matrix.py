"""The GPU compatibility matrix (byoc_cloud.gpu_matrix) for the build this kit ships and for others."""
from pathlib import Path

import pytest

from byoc import cuda
from byoc_cloud.gpu_matrix import FAMILIES, INFERENCE_AMIS, ImageFacts, markdown_table, plan

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
    assert table == markdown_table(shipped), "README.md: paste `python -m byoc_cloud.gpu_matrix` between the markers"
