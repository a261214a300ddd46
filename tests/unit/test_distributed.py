from types import SimpleNamespace

import pytest
import torch

from byoc.training import distributed, hyperparameters
from byoc.training.errors import TrainingError


def environment(hosts, current, instance_groups=None):
    """sagemaker-training's Environment as Cluster reads it; resource_config as SageMaker writes it."""
    config = {"current_host": current, "hosts": hosts, "network_interface_name": "eth0"}
    if instance_groups is not None:
        config["current_group_name"] = next(g["instance_group_name"] for g in instance_groups if current in g["hosts"])
        config["instance_groups"] = instance_groups
    return SimpleNamespace(hosts=hosts, current_host=current, network_interface_name="eth0", resource_config=config)


def test_the_cluster_meets_on_the_first_sorted_host():
    cluster = distributed.Cluster.from_environment(environment(["algo-2", "algo-3", "algo-1"], "algo-3"), gpus=4)
    assert cluster.master == "algo-1" and cluster.node_rank == 2
    assert cluster.processes_per_host == 4 and cluster.world_size == 12


def test_one_cpu_host_is_a_single_process_job():
    assert distributed.Cluster.from_environment(environment(["algo-1"], "algo-1"), gpus=0).world_size == 1


def test_a_current_host_outside_the_cluster_is_an_error():
    with pytest.raises(TrainingError, match="algo-9"):
        distributed.Cluster.from_environment(environment(["algo-1", "algo-2"], "algo-9"), gpus=0)


def test_a_single_process_needs_no_collectives():
    solo = distributed.SingleProcess(torch.device("cpu"))
    tensor = torch.tensor([1.0, 2.0])
    model = torch.nn.Linear(2, 2)
    assert solo.sum(tensor) is tensor and solo.wrap(model) is model and solo.broadcast(3) == 3
    assert solo.any(True) and not solo.any(False)


def test_only_process_group_errors_count_as_a_lost_peer():
    assert distributed.peer_failure(ValueError("bad"), 30) is None
    reason = distributed.peer_failure(torch.distributed.DistBackendError("Connection closed by peer"), 30)
    assert "distributed_timeout=30 s" in reason and "Connection closed by peer" in reason
    gloo = RuntimeError("[third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")
    assert "Connection reset by peer" in distributed.peer_failure(gloo, 30)


def test_distributed_timeout_is_validated():
    assert hyperparameters.parse({"distributed_timeout": 45}).distributed_timeout == 45
    with pytest.raises(hyperparameters.HyperparameterError, match="distributed_timeout"):
        hyperparameters.parse({"distributed_timeout": 1})


def test_one_instance_group_is_a_plain_cluster():
    """SageMaker lists a homogeneous job's hosts as one group, 'homogeneousCluster'."""
    groups = [{"instance_group_name": "homogeneousCluster", "instance_type": "ml.g5.xlarge",
               "hosts": ["algo-1", "algo-2"]}]
    cluster = distributed.Cluster.from_environment(environment(["algo-1", "algo-2"], "algo-2", instance_groups=groups),
                                                   gpus=0)
    assert cluster.world_size == 2


def test_a_heterogeneous_cluster_is_refused_in_one_paragraph():
    groups = [{"instance_group_name": "gpus", "instance_type": "ml.p4d.24xlarge", "hosts": ["algo-1", "algo-2"]},
              {"instance_group_name": "data", "instance_type": "ml.c5.18xlarge", "hosts": ["algo-3"]}]
    with pytest.raises(TrainingError) as error:
        distributed.Cluster.from_environment(environment(["algo-1", "algo-2", "algo-3"], "algo-3",
                                                         instance_groups=groups), gpus=0)
    message = str(error.value)
    assert "heterogeneous cluster (gpus: 2 x ml.p4d.24xlarge; data: 1 x ml.c5.18xlarge" in message
    assert "this host, algo-3, is in data" in message and "no InstanceGroups" in message
    assert "\n" not in message


def test_a_host_listed_twice_is_refused_at_once():
    with pytest.raises(TrainingError, match="lists host\\(s\\) algo-1 more than once"):
        distributed.Cluster.from_environment(environment(["algo-1", "algo-1"], "algo-1"), gpus=0)
