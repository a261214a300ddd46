"""Make torchvision import torch._dynamo when roi_align first needs it, not at `import torchvision`
(serving image build).

torchvision 0.25's ops/roi_align.py imports `is_compile_supported` from torch._dynamo at module level,
and `import torchvision` imports every op: each worker then spends about 0.8 s of its start (on a
2-core EPYC; BENCHMARKS.md) importing dynamo, which serving never runs (no torch.compile, and the
kit's models have no roi_align). Upstream moved roi_align's torch.compile call behind a lazy wrapper
for this reason (pytorch/vision#8436: importing dynamo has side effects for eager-only users); the
helper import came back at the top. This rewrites that one import as a function that imports it on
its first call, and stops the build if the line is not there exactly once (a newer torchvision:
look again). Usage:

    python3 lazy_dynamo_import.py SITE_PACKAGES
"""
import sys
from pathlib import Path

EAGER = "from torch._dynamo.utils import is_compile_supported\n"
LAZY = '''def is_compile_supported(device_type):  # byoc: imports dynamo on first use (containers/serving)
    from torch._dynamo.utils import is_compile_supported as supported

    return supported(device_type)
'''


def patch(site_packages: Path) -> None:
    path = site_packages / "torchvision/ops/roi_align.py"
    source = path.read_text()
    if source.count(EAGER) != 1:
        raise SystemExit(f"{path}: expected one line {EAGER.strip()!r}; torchvision changed, review this patch")
    path.write_text(source.replace(EAGER, LAZY))
    print(f"{path}: torch._dynamo is imported on roi_align's first call")


if __name__ == "__main__":
    patch(Path(sys.argv[1]))
