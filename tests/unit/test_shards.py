"""Several processes, replicated or sharded channels: who reads what, how many steps an epoch,
and what each host had. A stand-in group answers the collectives as the other ranks would."""
import pytest

from byoc.training import shards
from byoc.training.channels import Channel
from byoc.training.errors import DataError
from byoc.training.sampling import EpochSampler


class Rank:
    """One rank's view of a job: gather() returns `others` (by rank) with this rank's value in place."""

    def __init__(self, rank=0, world_size=1, local_rank=0, local_world_size=1, others=()):
        self.rank, self.world_size = rank, world_size
        self.local_rank, self.local_world_size = local_rank, local_world_size
        self.others = list(others)

    def gather(self, value) -> list:
        everyone = list(self.others)
        everyone.insert(self.rank, value)
        return everyone


class Split(list):
    """A split as data_report sees it: its length, samples and classes."""

    def __init__(self, targets, classes):
        super().__init__(targets)
        self.samples, self.classes = [(f"{i}.png", t) for i, t in enumerate(targets)], classes


def channel(name="train", sharded=False, path="/opt/ml/input/data/train"):
    return Channel(name, path, sharded=sharded)


def test_a_sharded_channel_is_split_among_one_hosts_processes():
    group = Rank(rank=3, world_size=4, local_rank=1, local_world_size=2)  # host 2 of 2, GPU 2 of 2
    assert shards.share_of(channel(sharded=True), group) == shards.Share(1, 2)
    assert shards.share_of(channel(sharded=False), group) == shards.Share(3, 4)


def test_every_process_runs_the_fewest_steps_any_has_images_for():
    # algo-1 holds 3,200 images, algo-2 1,800; 32 images a process a step
    assert shards.own_steps(3200, shards.Share(0, 1), 32) == 100
    group = Rank(rank=0, world_size=2, others=[("algo-2", shards.own_steps(1800, shards.Share(0, 1), 32))])
    assert shards.agree_on_steps(3200, shards.Share(0, 1), 32, group, "algo-1") == 56


def test_a_share_smaller_than_a_batch_is_one_short_step():
    assert shards.own_steps(20, shards.Share(0, 1), 32) == 1 and shards.own_steps(0, shards.Share(0, 1), 32) == 0


def test_a_host_with_an_empty_shard_is_named():
    group = Rank(rank=0, world_size=2, others=[("algo-2", 0)])
    with pytest.raises(DataError, match=r"Host\(s\) algo-2 have no readable training images .*2 hosts"):
        shards.agree_on_steps(3200, shards.Share(0, 1), 32, group, "algo-1")


def test_the_capped_epoch_keeps_the_order_and_resumes_inside_it():
    sampler = EpochSampler(100, seed=7, per_epoch=32)
    sampler.set_epoch(2)
    capped = list(sampler)
    full = EpochSampler(100, seed=7)
    full.set_epoch(2)
    assert capped == list(full)[:32] and len(sampler) == 32
    sampler.set_epoch(2, start=16)
    assert list(sampler) == capped[16:]


def test_sharded_classes_are_every_hosts_folders(tmp_path):
    for name in ("001.A", "002.B"):
        (tmp_path / name).mkdir()
    group = Rank(rank=1, world_size=2, others=[["002.B", "003.C"]])
    assert shards.shared_classes(channel(sharded=True, path=tmp_path), group) == ["001.A", "002.B", "003.C"]
    assert shards.shared_classes(channel(sharded=False, path=tmp_path), group) is None


def test_sharded_files_that_belong_together_are_refused_on_several_hosts(tmp_path):
    for name in ("train", "test", "meta"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match="ShardedByS3Key but holds cifar100 files.*FullyReplicated"):
        shards.shared_classes(channel(sharded=True, path=tmp_path), Rank(world_size=2, others=[None]))


def test_the_report_sums_sharded_channels_and_counts_replicated_ones_once():
    channels = {"train": channel(sharded=True), "valid": channel("valid", sharded=True), "test": channel("test")}
    mine = {"train": Split([0] * 5 + [1] * 5, ["a", "b"]), "valid": Split([0, 1, 1], ["a", "b"]),
            "test": Split([0, 1], ["a", "b"])}

    class TwoHosts(Rank):
        def gather(self, value):
            if isinstance(value, tuple):  # the counts
                return [value, ("algo-2", {"train": 6, "valid": 2, "test": 2})]
            return [value, [0, 6]]  # images per class on algo-2

    report = shards.data_report(mine, channels, TwoHosts(world_size=2), "algo-1", steps=3, batch_size=4)
    assert report["hosts"] == {"algo-1": {"train": 10, "valid": 3, "test": 2}, "algo-2": {"train": 6, "valid": 2,
                                                                                           "test": 2}}
    assert report["channels"] == {"train": {"distribution": "ShardedByS3Key", "images": 16},
                                  "valid": {"distribution": "ShardedByS3Key", "images": 5},
                                  "test": {"distribution": "FullyReplicated", "images": 2}}
    assert (report["steps_per_epoch"], report["images_per_epoch"]) == (3, 12)


def test_a_class_no_host_has_images_for_is_refused():
    mine = {"train": Split([0, 0, 0], ["a", "b", "c"])}

    class TwoHosts(Rank):
        def gather(self, value):
            return [value, ("algo-2", {"train": 2})] if isinstance(value, tuple) else [value, [0, 2, 0]]

    with pytest.raises(DataError, match="Class folder\\(s\\) c of the sharded training channel hold no readable"):
        shards.data_report(mine, {"train": channel(sharded=True)}, TwoHosts(world_size=2), "algo-1", 1, 2)


def test_an_empty_evaluation_channel_is_refused_by_name():
    mine = {"train": Split([0, 1], ["a", "b"]), "valid": Split([], ["a", "b"])}
    channels = {"train": channel(), "valid": channel("validation", path="/opt/ml/input/data/validation")}
    with pytest.raises(DataError, match="The 'validation' channel \\(/opt/ml/input/data/validation\\) has no "
                                        "readable images, so there is nothing to evaluate on"):
        shards.data_report(mine, channels, Rank(), "algo-1", steps=1, batch_size=2)


def test_a_sharded_evaluation_channel_needs_images_on_some_host_only():
    mine = {"train": Split([0, 1], ["a", "b"]), "test": Split([], ["a", "b"])}
    channels = {"train": channel(), "test": channel("test", sharded=True)}

    def hosts(test_images_on_algo_2):
        class TwoHosts(Rank):
            def gather(self, value):
                return [value, ("algo-2", {"train": 2, "test": test_images_on_algo_2})]
        return TwoHosts(world_size=2)

    assert shards.data_report(mine, channels, hosts(3), "algo-1", 1, 2)["channels"]["test"]["images"] == 3
    with pytest.raises(DataError, match="The 'test' channel .* has no readable images on any host"):
        shards.data_report(mine, channels, hosts(0), "algo-1", 1, 2)
