"""The CUDA decision (byoc.cuda.choose) against stand-in hosts: drivers, GPUs, compat libraries."""
import os
import stat
import subprocess
import sys

import pytest

from byoc import contract, cuda
from byoc.cuda import Choice, CudaUnusable, Host

CUDA_12_8 = (12, 8)


def test_no_gpu_means_the_cpu_and_says_so():
    choice = cuda.choose(Host(0, None, None), None, "auto", "training")
    assert choice.device == "cpu" and "no NVIDIA GPU" in choice.reason


@pytest.mark.parametrize("driver", [(535, 54, 3), (525, 60, 13), (550, 144, 1), (580, 65, 6)])
def test_a_driver_of_the_cuda_majors_range_runs_it(driver):
    choice = cuda.choose(Host(1, driver, None), CUDA_12_8, "auto", "serving")
    assert (choice.device, choice.library_path) == ("cuda", None)
    assert cuda.driver_text(driver) in choice.reason and "R525" in choice.reason


def test_an_older_driver_uses_the_forward_compatibility_libraries_when_the_image_has_them():
    choice = cuda.choose(Host(4, (470, 57, 2), (570, 124, 6)), CUDA_12_8, "auto", "training")
    assert choice.device == "cuda" and choice.library_path == str(cuda.COMPAT_DIR)
    assert "forward-compatibility libraries 570.124.06" in choice.reason


@pytest.mark.parametrize("job, fix", [("serving", "al2-ami-sagemaker-inference-gpu-2-1"),
                                      ("training", "BYOC_DEVICE=cpu")])
def test_an_older_driver_without_them_is_one_paragraph_naming_driver_cuda_and_fix(job, fix):
    with pytest.raises(CudaUnusable) as error:
        cuda.choose(Host(1, (470, 256, 2), None), CUDA_12_8, "auto", job)
    message = str(error.value)
    assert "470.256.02" in message and "CUDA 12.8" in message and "R525" in message and fix in message
    assert "\n" not in message


def test_compat_libraries_older_than_the_host_driver_do_not_help():
    with pytest.raises(CudaUnusable):
        cuda.choose(Host(1, (470, 256, 2), (470, 57, 2)), CUDA_12_8, "auto", "serving")


def test_cpu_on_purpose_and_cuda_on_demand():
    assert cuda.choose(Host(8, (470, 1), None), CUDA_12_8, "cpu", "training").device == "cpu"
    with pytest.raises(CudaUnusable, match="no NVIDIA GPU"):
        cuda.choose(Host(0, None, None), CUDA_12_8, "cuda", "training")


def test_gpus_without_a_readable_driver_or_with_a_cpu_torch_are_refused():
    with pytest.raises(CudaUnusable, match="no readable driver version"):
        cuda.choose(Host(1, None, None), CUDA_12_8, "auto", "serving")
    with pytest.raises(CudaUnusable, match="CPU-only build"):
        cuda.choose(Host(1, (535, 1), None), None, "auto", "serving")


def test_a_bad_device_setting_is_refused(monkeypatch):
    monkeypatch.setenv("BYOC_DEVICE", "gpu")
    with pytest.raises(CudaUnusable, match="BYOC_DEVICE='gpu'.*auto, cpu, cuda"):
        cuda.setting()


def test_the_driver_comes_from_the_kernel_module_else_nvidia_smi(tmp_path, monkeypatch):
    version_file = tmp_path / "version"
    version_file.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Tue Jun  6 22:20:39 UTC 2023\n"
                            "GCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC)\n")
    monkeypatch.setattr(cuda, "DRIVER_FILE", version_file)
    assert cuda.host_driver() == (535, 54, 3)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$1" in -L) echo "GPU 0: Tesla T4 (UUID: GPU-1)"; echo "GPU 1: Tesla T4 (UUID: GPU-2)";;'
                   ' *) echo 470.57.02; echo 470.57.02;; esac\n')
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(cuda, "DRIVER_FILE", tmp_path / "missing")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert cuda.host_driver() == (470, 57, 2)
    assert cuda.gpu_count() == 2


def test_the_compat_libraries_version_is_read_from_libcuda(tmp_path):
    assert cuda.compat_driver(tmp_path) is None
    for name in ("libcuda.so", "libcuda.so.1", "libcuda.so.570.124.06", "libnvidia-ptxjitcompiler.so.570.124.06"):
        (tmp_path / name).write_bytes(b"")
    assert cuda.compat_driver(tmp_path) == (570, 124, 6)


def test_forward_compatibility_goes_first_on_the_library_path(monkeypatch):
    choice = Choice("cuda", "/usr/local/cuda/compat", "")
    env = cuda.environment(choice, {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/usr/local/cuda/compat", "A": "1"})
    assert env == {"LD_LIBRARY_PATH": "/usr/local/cuda/compat:/usr/local/nvidia/lib64", "A": "1"}
    assert cuda.environment(Choice("cuda", None, ""), {"A": "1"}) == {"A": "1"}
    monkeypatch.setattr(cuda, "started_with", lambda name: "/usr/local/nvidia/lib64")
    assert cuda.needs_restart(choice) and not cuda.needs_restart(Choice("cuda", None, ""))
    monkeypatch.setattr(cuda, "started_with", lambda name: "/usr/local/cuda/compat:/usr/local/nvidia/lib64")
    assert not cuda.needs_restart(choice)


def test_the_library_path_is_read_as_the_process_started_with_it():
    """cv2 (albumentations) prepends its own folder to os.environ's LD_LIBRARY_PATH when imported."""
    code = ("import os; os.environ['LD_LIBRARY_PATH'] = '/changed/after/start'; "
            "from byoc import cuda; print(cuda.started_with('LD_LIBRARY_PATH'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "LD_LIBRARY_PATH": "/usr/local/cuda/compat:/at/start"})
    assert done.stdout.strip() == "/usr/local/cuda/compat:/at/start"


@pytest.mark.parametrize("archs, gpu, covered", [
    (["sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], (7, 0), True),   # V100
    (["sm_75", "sm_80", "sm_86", "sm_90"], (7, 0), False),            # CUDA 13 builds dropped Volta
    (["sm_80", "sm_86", "sm_90"], (8, 9), True),                     # L4, L40S run sm_86 kernels
    (["sm_80", "sm_90", "sm_100", "sm_120"], (12, 0), True),
    (["sm_100", "sm_120"], (10, 3), True),
    (["sm_90a", "compute_90"], (9, 0), False),
])
def test_kernels_cover_gpus_of_the_same_major_and_a_newer_minor(archs, gpu, covered):
    assert contract.archs_cover(archs, gpu) is covered


def test_build_flags_carry_the_facts_as_labels_and_the_runtime_requirement():
    found = {"torch": "2.10.0+cu128", "cuda": "12.8", "archs": ["sm_70", "sm_90"], "compat": ""}
    flags = cuda.build_flags(found)
    assert flags[:2] == ["--label", "byoc.torch.version=2.10.0+cu128"]
    assert "byoc.cuda.archs=sm_70,sm_90" in flags and "CUDA_VERSION=12.8" in flags
    assert "CUDA_REQUIREMENT=cuda>=12.8 driver>=525" in flags
    with_compat = cuda.requirement({**found, "compat": "570.124.06"})
    assert with_compat.startswith("cuda>=12.8 driver>=525 brand=tesla,driver>=470,driver<471")
    assert cuda.requirement({**found, "cuda": ""}) == ""
