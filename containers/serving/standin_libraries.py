"""Replace shared libraries a single-GPU server never calls with small stand-ins (serving image build).

torch's libtorch_cuda.so links NCCL (collectives across GPUs) and cuSPARSELt (2:4 sparse matmuls):
`import torch` loads them even on a CPU, and Python loads extension modules with RTLD_NOW, so
every symbol torch takes from them must resolve. Each stand-in keeps the library's SONAME and
defines exactly those symbols, as functions that print which library is missing and abort, so
a call that should never come fails loudly instead of computing garbage. Data symbols cannot be
stood in for: the build stops if torch takes one. Usage, with nm and a C compiler:

    python3 standin_libraries.py SITE_PACKAGES nvidia/nccl/lib/libnccl.so.2 ...
"""
import subprocess
import sys
import tempfile
from pathlib import Path

FUNCTION_TYPES = {"T", "W", "i"}


def dynamic_symbols(path: Path, defined: bool) -> dict[str, str]:
    """{name: nm type letter} of path's dynamic symbols, defined or undefined ones."""
    flag = "--defined-only" if defined else "--undefined-only"
    listing = subprocess.run(["nm", "-D", flag, str(path)], capture_output=True, text=True).stdout
    symbols = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            symbols[parts[-1].split("@")[0]] = parts[-2]
    return symbols


SYSTEM_RUNTIME = ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1")


def others(site_packages: Path, skip: set[Path]) -> tuple[set[str], set[str]]:
    """What the other shared objects under site-packages take from elsewhere, and what they and
    the C/C++ runtime define (cuSPARSELt exports its own copy of libstdc++'s symbols: those must
    keep resolving to the real ones, not to a stand-in)."""
    wanted, defined = set(), set()
    for path in site_packages.rglob("*.so*"):
        if path.is_file() and path not in skip and not path.is_symlink():
            wanted |= set(dynamic_symbols(path, defined=False))
            defined |= set(dynamic_symbols(path, defined=True))
    for name in SYSTEM_RUNTIME:
        for path in Path("/usr/lib/x86_64-linux-gnu").glob(name):
            defined |= set(dynamic_symbols(path, defined=True))
    return wanted, defined


def soname(path: Path) -> str:
    dynamic = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True, check=True).stdout
    return next(line.split()[1] for line in dynamic.splitlines() if line.strip().startswith("SONAME"))


def stand_in_source(library: str, names: list[str]) -> str:
    lines = ["#include <stdio.h>", "#include <stdlib.h>",
             "static void missing(const char *name) {",
             f'    fprintf(stderr, "byoc-serving: %s was called, but {library} is a stand-in in this image '
             '(a single-GPU server never needs it; containers/serving/standin_libraries.py)\\n", name);',
             "    abort();", "}"]
    lines += [f'void {name}(void) {{ missing("{name}"); }}' for name in names]
    return "\n".join(lines) + "\n"


def replace(library: Path, wanted: set[str], elsewhere: set[str]) -> int:
    """Write the stand-in over `library`; the number of symbols it stands in for."""
    provided = dynamic_symbols(library, defined=True)
    taken = sorted((wanted & set(provided)) - elsewhere)
    data = [name for name in taken if provided[name] not in FUNCTION_TYPES]
    if data:
        sys.exit(f"{library}: torch takes data symbols from it ({', '.join(data[:5])}): no stand-in possible")
    name = soname(library)
    with tempfile.TemporaryDirectory() as work:
        source = Path(work, "standin.c")
        source.write_text(stand_in_source(name, taken))
        built = Path(work, name)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-Wl,-soname,{name}", "-o", str(built), str(source)],
                       check=True)
        library.write_bytes(built.read_bytes())
    return len(taken)


def main(argv: list[str]) -> None:
    site_packages, libraries = Path(argv[0]), [Path(argv[0], name) for name in argv[1:]]
    wanted, elsewhere = others(site_packages, set(libraries))
    for library in libraries:
        size = library.stat().st_size
        count = replace(library, wanted, elsewhere)
        print(f"{library}: {size / 2**20:.0f} MiB -> a stand-in for {count} symbols ({library.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
