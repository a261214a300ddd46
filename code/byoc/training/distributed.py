"""Training across N hosts x M GPUs with PyTorch's own engine: torchrun's launcher and DDP.

SageMaker describes the cluster in resourceconfig.json: `hosts` (sorted), `current_host`
and `network_interface_name`. With more than one process in all, main() launches one
training process per GPU (one per host on CPUs) through torchrun's launcher
(torch.distributed.launcher, static rendezvous on the first sorted host, port 7777 as
sagemaker-training's torch_distributed uses). The processes form a process group (NCCL on
GPUs, Gloo on CPUs) with a timeout, so a host that never joins or stops mid-run fails the
others within `distributed_timeout` seconds instead of hanging until the job's limit.

`batch_size` is the global batch: each process trains on batch_size / processes images a
step, so a job's hyperparameters mean the same on any number of hosts.
"""
import logging
import os
import signal
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from byoc.training import preflight
from byoc.training.errors import Stopped, TrainingError

logger = logging.getLogger(__name__)
MASTER_PORT = 7777
FAILURES_ENV = "BYOC_RANK_FAILURES"  # where a training process leaves its one-paragraph reason


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]  # sorted: the first one hosts the rendezvous
    current_host: str
    processes_per_host: int
    interface: str = "eth0"

    @classmethod
    def from_environment(cls, env, gpus: int) -> "Cluster":
        """From sagemaker-training's Environment (resourceconfig.json) and the GPUs this job uses
        (0 on CPUs: one process per host)."""
        preflight.check_resource_config(env.resource_config)  # distinct hosts, current_host among them
        refuse_heterogeneous(env.resource_config)
        hosts = tuple(sorted(env.hosts))
        return cls(hosts, env.current_host, max(1, gpus), env.network_interface_name or "eth0")

    @property
    def master(self) -> str:
        return self.hosts[0]

    @property
    def node_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.processes_per_host


def refuse_heterogeneous(resource_config: dict) -> None:
    """Several instance groups (ResourceConfig.InstanceGroups with more than one group) need a
    role per group; this job has one kind of host. One group is what a plain job gets, too."""
    groups = resource_config.get("instance_groups") or []
    if len(groups) > 1:
        described = "; ".join(f"{g.get('instance_group_name')}: {len(g.get('hosts', []))} x "
                              f"{g.get('instance_type')}" for g in groups)
        raise TrainingError(
            f"This job runs on a heterogeneous cluster ({described}; this host, "
            f"{resource_config.get('current_host')}, is in {resource_config.get('current_group_name')}), which "
            "this image does not support: every host trains the same model on the same kind of instance. Use "
            "one instance type and count (ResourceConfig InstanceType/InstanceCount, no InstanceGroups)."
        )


class SingleProcess:
    """The one-process job: every collective is a no-op, so the training loop has one shape
    whether it runs alone or as one of a ProcessGroup's ranks."""

    rank, world_size, local_rank, local_world_size = 0, 1, 0, 1
    is_main = True

    def __init__(self, device: torch.device):
        self.device = device

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def any(self, flag: bool) -> bool:
        return flag

    def broadcast(self, value):
        return value

    def gather(self, value) -> list:
        return [value]

    def wrap(self, model, find_unused_parameters: bool = False):
        return model

    def close(self) -> None:
        pass


class ProcessGroup:
    """One training process of many (started by launch()): DDP and the collectives it needs,
    with SingleProcess's interface."""

    def __init__(self, timeout_s: int, device_type: str):
        local_rank = int(os.environ["LOCAL_RANK"])
        if device_type == "cuda":  # one GPU per process
            torch.cuda.set_device(local_rank)
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = torch.device("cpu")
        # env:// reads RANK, WORLD_SIZE and the launcher's store from the environment.
        dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=timeout_s))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank, self.local_world_size = local_rank, int(os.environ["LOCAL_WORLD_SIZE"])
        self.is_main = self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        on_device = tensor.to(self.device)  # NCCL reduces GPU tensors only
        dist.all_reduce(on_device)
        return on_device.to(tensor.device)

    def any(self, flag: bool) -> bool:
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast(self, value):
        """Rank 0's value on every rank (pickled between this job's own processes only)."""
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's value, in rank order, on every rank (pickled between this job's processes)."""
        everyone = [None] * self.world_size
        dist.all_gather_object(everyone, value)
        return everyone

    def wrap(self, model, find_unused_parameters: bool = False):
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                       find_unused_parameters=find_unused_parameters)

    def close(self) -> None:
        dist.destroy_process_group()


Group = SingleProcess | ProcessGroup


class SharedStop:
    """A stop request (SIGTERM) on any rank stops every rank at the same batch.

    Each check is a one-number all-reduce, so all processes leave the epoch together and
    rank 0 can checkpoint a state every rank agrees on.
    """

    def __init__(self, local, group: "Group"):
        self.local, self.group = local, group

    @property
    def signum(self) -> int:
        return self.local.signum or signal.SIGTERM

    def __bool__(self) -> bool:
        return self.group.any(bool(self.local))

    @property
    def requested_here(self) -> bool:
        """This rank's own flag: no collective, so loops of unequal length (evaluation) may ask it."""
        return bool(self.local)


def peer_failure(error: BaseException, timeout_s: int) -> str | None:
    """A one-paragraph reason when `error` came from the process group (a lost or stalled peer)."""
    # Gloo's transport reports a dropped peer as a plain RuntimeError from gloo/transport/tcp.
    if not isinstance(error, dist.DistError) and "gloo/transport" not in str(error):
        return None
    detail = " ".join(str(error).split())[:400]
    return (f"Lost contact with the other training processes: a host stopped, crashed or stalled for longer "
            f"than distributed_timeout={timeout_s} s (the first host to fail has the cause in its log). "
            f"{type(error).__name__}: {detail}")


def record_failure(message: str) -> None:
    """Leave this rank's reason where the launcher on this host reads it."""
    folder = os.environ.get(FAILURES_ENV)
    if folder:
        Path(folder, f"rank-{os.environ.get('RANK', '0')}").write_text(message)


def launch(cluster: Cluster, hp, device_type: str, worker) -> None:
    """Run `worker(hp, device_type)` in cluster.processes_per_host processes here, as part of the
    whole cluster's process group. Returns when all succeeded; raises TrainingError (with the first
    failed process's reason) or Stopped."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Gloo and NCCL pick their addresses on SageMaker's interface (eth0; ethwe on old hosts).
    os.environ.setdefault("GLOO_SOCKET_IFNAME", cluster.interface)
    os.environ.setdefault("NCCL_SOCKET_IFNAME", cluster.interface)
    timeout_s = hp.distributed_timeout
    failures = Path(tempfile.mkdtemp(prefix="byoc-ranks-"))
    os.environ[FAILURES_ENV] = str(failures)
    where = f"host {cluster.current_host} (node {cluster.node_rank + 1} of {len(cluster.hosts)})"
    logger.info("distributed training: %d host(s) x %d process(es), rendezvous on %s:%d, this is %s, "
                "timeout %d s", len(cluster.hosts), cluster.processes_per_host, cluster.master, MASTER_PORT,
                where, timeout_s)
    config = LaunchConfig(
        min_nodes=len(cluster.hosts), max_nodes=len(cluster.hosts), nproc_per_node=cluster.processes_per_host,
        run_id="byoc", rdzv_backend="static", rdzv_endpoint=f"{cluster.master}:{MASTER_PORT}",
        rdzv_configs={"rank": cluster.node_rank, "timeout": timeout_s}, max_restarts=0, monitor_interval=0.5,
        start_method="spawn",
    )
    try:
        elastic_launch(config, worker)(hp, device_type)
    except SignalException as error:
        raise Stopped(error.sigval) from None
    except ChildFailedError as error:
        if all(f.exitcode == 128 + signal.SIGTERM for f in error.failures.values()):
            raise Stopped(signal.SIGTERM) from None
        reasons = sorted(failures.glob("rank-*"), key=lambda p: int(p.name.split("-")[1]))
        if reasons:
            reason = reasons[0].read_text()
        else:
            rank, failure = min(error.failures.items())
            reason = (f"Training process {rank} ended with exit code {failure.exitcode}"
                      + (f" (signal {failure.signal_name()}; out of memory?)" if failure.exitcode < 0 else "")
                      + ".")
        raise TrainingError(f"Distributed training failed on {where}: {reason}") from None
    except dist.DistError as error:  # the rendezvous: a host never came, or the first host is unreachable
        detail = " ".join(str(error).split())[:400]
        raise TrainingError(
            f"Distributed training failed on {where}: the {len(cluster.hosts)} hosts {', '.join(cluster.hosts)} "
            f"did not all meet at {cluster.master}:{MASTER_PORT} within distributed_timeout={timeout_s} s "
            f"(a host did not start, or the hosts cannot reach each other on port {MASTER_PORT}). "
            f"{type(error).__name__}: {detail}"
        ) from None
