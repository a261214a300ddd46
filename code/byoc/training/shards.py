"""Who reads which images when a job has several processes, and what each host had.

A replicated channel (FullyReplicated, the default) holds the same files on every host: the
job's processes share one epoch order and each takes every N-th image (N = all processes);
evaluation gives each every N-th image and sums the counts.

A sharded channel (ShardedByS3Key) holds about 1/hosts of the S3 objects on each host: the
processes on a host split that host's files the same way among themselves, and evaluation sums
every host's own files. The classes are the union of all hosts' class folders (a host may lack
a class), and every process runs the same number of steps an epoch, the fewest any of them has
images for: a process that ran out would leave the others waiting in their next all-reduce.
"""
import logging
from dataclasses import dataclass

from torch.utils.data import Subset

from byoc.training import formats, layouts
from byoc.training.channels import Channel
from byoc.training.errors import DataError

logger = logging.getLogger("byoc.training")


@dataclass(frozen=True)
class Share:
    """One process's part in a channel: it takes every `size`-th item, from its `rank` on."""

    rank: int
    size: int


def share_of(channel: Channel, group) -> Share:
    return Share(group.local_rank, group.local_world_size) if channel.sharded else Share(group.rank, group.world_size)


def hosts_in(group) -> int:
    return group.world_size // group.local_world_size


def shared_classes(channel: Channel, group) -> list[str] | None:
    """The training classes of a sharded channel: every host's class folders (None: replicated,
    each host's own folders are everyone's)."""
    if not channel.sharded:
        return None
    kind = formats.detect(channel.path)
    if kind != "folders" and hosts_in(group) > 1:
        raise DataError(
            f"The '{channel.name}' channel is ShardedByS3Key but holds {kind} files, which only make sense "
            "together on one host: use S3DataDistributionType=FullyReplicated for it, or class folders of images."
        )
    mine = layouts.class_folders(channel.path) if kind == "folders" else []
    return sorted(set().union(*group.gather(mine))) if kind == "folders" else None


def evaluation_share(dataset, share: Share):
    return Subset(dataset, range(share.rank, len(dataset), share.size))


def own_steps(images: int, share: Share, rank_batch: int) -> int:
    """Full batches this process has images for (one short batch when it has fewer than a batch)."""
    available = images // share.size
    return available // rank_batch if available >= rank_batch else int(available > 0)


def agree_on_steps(images: int, share: Share, rank_batch: int, group, host: str) -> int:
    """The steps every process runs an epoch: the fewest any process has images for."""
    everyone = group.gather((host, own_steps(images, share, rank_batch)))
    steps = min(count for _, count in everyone)
    if steps == 0:
        empty = sorted({name for name, count in everyone if count == 0})
        raise DataError(
            f"Host(s) {', '.join(empty)} have no readable training images in their shard of the sharded "
            f"training channel: ShardedByS3Key gives each of the job's {hosts_in(group)} hosts about 1/"
            f"{hosts_in(group)} of the channel's S3 objects, so the channel needs many more objects than hosts "
            "(or use FullyReplicated)."
        )
    return steps


def data_report(splits: dict, channels: dict[str, Channel], group, host: str, steps: int, batch_size: int) -> dict:
    """What each host had and what an epoch trains on, for the log and metrics.json; refuses a
    sharded training class that no host has images for."""
    counts = {name: len(split) for name, split in splits.items()}
    hosts = dict(group.gather((host, counts)))  # one entry per host: its processes hold the same files
    report = {"hosts": hosts, "steps_per_epoch": steps, "images_per_epoch": steps * batch_size, "channels": {}}
    for name, channel in channels.items():
        images = sum(h[name] for h in hosts.values()) if channel.sharded else counts[name]
        report["channels"][name] = {"distribution": channel.distribution, "images": images}
    refuse_empty_evaluation(report["channels"], channels)
    if channels["train"].sharded:
        check_every_class_has_images(splits["train"], group)
    per_host = "; ".join(f"{h} " + ", ".join(f"{n} {c}" for n, c in counts.items())
                         for h, counts in sorted(hosts.items()))
    logger.info("images per host: %s; every process trains %d steps an epoch (%d of the %d training images)",
                per_host, steps, steps * batch_size, report["channels"]["train"]["images"])
    return report


def refuse_empty_evaluation(images: dict[str, dict], channels: dict[str, Channel]) -> None:
    """A valid or test channel given with no readable image on any host: scoring 0 of 0 images, every
    epoch would tie at accuracy 0, so the best-weights choice and early stopping would go wrong."""
    for name in ("valid", "test"):
        if name in channels and images[name]["images"] == 0:
            channel = channels[name]
            raise DataError(
                f"The '{channel.name}' channel ({channel.path}) has no readable images"
                f"{' on any host' if channel.sharded else ''}, so there is nothing to evaluate on: an empty "
                f"'{name}' split would score every epoch 0 of 0 images. Put class folders of images (or "
                "CIFAR-100 or IDX files) in it, or leave the channel out of the job."
            )


def check_every_class_has_images(train, group) -> None:
    per_class = [0] * len(train.classes)
    for _, target in train.samples:
        per_class[target] += 1
    totals = [sum(column) for column in zip(*group.gather(per_class))]
    missing = [name for name, total in zip(train.classes, totals) if total == 0]
    if missing:
        raise DataError(f"Class folder(s) {', '.join(missing[:5])} of the sharded training channel hold no "
                        "readable images on any host; every class needs training images.")
