"""Room in the container's memory for one more model (multi-model loads answer 507 without it).

The container's limit is its cgroup's (v2 or v1); what it uses is its processes' anonymous and
shared memory, not the page cache the kernel can drop (files read, libraries mapped). Without a
limit, the host's MemAvailable counts. A model needs, per worker, a worker process with torch
imported (and MMS's backend server for it) and twice its weights while they load (the file's
tensors and the model's parameters).

Graph mode on the CPU (byoc.cpu_graph) costs more as it meets new batch sizes: oneDNN keeps packed
weights for each. A worker uses it only where the container has that room too (graph_fits).
"""
from pathlib import Path

from byoc.serving.errors import RequestError

MIB = 1024 * 1024
# A model's worker process with torch and our handler imported, plus its MMS backend server, before
# the weights: each small model loaded added 360-380 MiB to the container (serving image, CPU).
WORKER_BYTES = 384 * MIB
CGROUP = Path("/sys/fs/cgroup")
# Graph mode's cost beyond the eager model, in copies of the weights (in the serving dtype): ResNet-50
# kept 8.5 (fp32) and 10.2 (bf16) copies more than eagerly after batches of 1 to 8 images (cpu_graph.CHUNK
# sizes); 11 leaves a margin. Plus room for one full batch's activations.
GRAPH_WEIGHT_COPIES = 11
GRAPH_ACTIVATIONS_BYTES = 256 * MIB


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == key and fields[1].isdigit():
                return int(fields[1])
    except OSError:
        pass
    return 0


def cgroup_room(root: Path = CGROUP) -> int | None:
    """This container's cgroup limit minus its anonymous and shared memory; None without a limit."""
    for limit, stat, anon, shmem in [("memory.max", "memory.stat", "anon", "shmem"),
                                     ("memory/memory.limit_in_bytes", "memory/memory.stat", "total_rss",
                                      "total_shmem")]:
        cap = _number(root / limit)
        if cap is not None and cap < 1 << 60:  # "max", or v1's huge number: no limit
            return cap - _stat(root / stat, anon) - _stat(root / stat, shmem)
    return None


def host_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    return 1024 * _stat(meminfo, "MemAvailable:") if meminfo.exists() else 1 << 62


def available() -> int:
    room = cgroup_room()
    return min(host_available(), room) if room is not None else host_available()


def need(weights_bytes: int, workers: int) -> int:
    return workers * (WORKER_BYTES + 2 * weights_bytes)


def check_room(name: str, weights_bytes: int, workers: int) -> None:
    needed, free = need(weights_bytes, workers), available()
    if needed > free:
        raise RequestError(507, f"Model {name!r} needs about {needed // MIB} MiB to load ({workers} worker(s), "
                                f"each {WORKER_BYTES // MIB} MiB plus twice its {weights_bytes // MIB} MiB of "
                                f"weights) and the container has {max(0, free) // MIB} MiB free: unload "
                                "other models or use an instance with more memory.")


def graph_need(weights_bytes: int) -> int:
    return GRAPH_WEIGHT_COPIES * weights_bytes + GRAPH_ACTIVATIONS_BYTES


def graph_fits(weights_bytes: int, free: int | None = None) -> str | None:
    """None if graph mode fits in what the container has free, else why not (for the log)."""
    needed, free = graph_need(weights_bytes), available() if free is None else free
    if needed <= free:
        return None
    return (f"graph mode would need about {needed // MIB} MiB more, and the container has {max(0, free) // MIB} "
            "MiB free")
