"""Epoch order and augmentation randomness as pure functions of (seed, epoch, index).

A run stopped mid-epoch and resumed therefore sees exactly the images, in the
same order and with the same augmentations, that an uninterrupted run would:
the sampler restarts the epoch's permutation where the checkpoint left off,
and every sample carries its own augmentation seed to whichever worker
process loads it.
"""
import torch
from torch.utils.data import Dataset, Sampler

_MIX = 0x9E3779B97F4A7C15  # splits (seed, epoch, index) into well-separated streams


def mixed_seed(*parts: int) -> int:
    value = 0
    for part in parts:
        value = (value * _MIX + part + 1) % (2**63 - 1)
    return value


class EpochSampler(Sampler):
    """Yields (index, sample_seed) for one epoch, optionally from an offset into it.

    With several training processes (DistributedSampler's job), the `world_size` processes that
    share these files draw the same epoch order and each takes every world_size-th index from its
    rank on; all get the same count (the epoch's last < world_size samples are dropped), so none
    waits for a step the others never take. `per_epoch` caps each process's count (a sharded
    channel: the smallest shard sets every process's pace).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, per_epoch: int | None = None):
        self.size, self.seed = size, seed
        self.rank, self.world_size = rank, world_size
        self.per_epoch = size // world_size if per_epoch is None else min(per_epoch, size // world_size)
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start`: how many of this epoch's samples (the world_size processes together) were
        already trained on."""
        self.epoch, self.start = epoch, start

    def __iter__(self):
        generator = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        for index in order[self.start + self.rank::self.world_size][:len(self)]:
            yield index, mixed_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(0, self.per_epoch - self.start // self.world_size)


class SeededAugmentation(Dataset):
    """Wraps a dataset of (RGB array, label); augments each sample with the seed it is given."""

    def __init__(self, dataset, augment):
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        array, label = self.dataset[index]
        self.augment.set_random_seed(seed)
        return self.augment(image=array)["image"], label

    def __getitems__(self, keys: list[tuple[int, int]]):
        """A whole batch (DataLoader's batched fetch): one seed for the batch, as reseeding
        albumentations costs more than augmenting a small image. Resuming happens at batch
        boundaries, so the batch seed (its first sample's) is reproduced exactly."""
        self.augment.set_random_seed(keys[0][1])
        batch = []
        for index, _ in keys:
            array, label = self.dataset[index]
            batch.append((self.augment(image=array)["image"], label))
        return batch
