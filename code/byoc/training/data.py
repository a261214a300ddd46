"""Channels: train (required), valid and test (optional); formats in formats.py.

Each channel holds one folder per class, named like the dog-breed data set
(`001.Affenpinscher/`, `002.Afghan_hound/` ...; any folder name works). The
training channel defines the classes; the others are read with its class
indices, so a class missing from a small validation set shifts nothing.
"""
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from byoc.contract import Preprocessing
from byoc.preprocessing import eval_transform
from byoc.training import formats
from byoc.training.errors import DataError
from byoc.training.sampling import EpochSampler, SeededAugmentation

logger = logging.getLogger(__name__)
REQUIRED_CHANNELS = ("train",)
OPTIONAL_CHANNELS = {"valid": ("valid", "validation"), "test": ("test",)}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def find_channels(channel_dirs: dict[str, str]) -> dict[str, Path]:
    """Map our channel names to their folders; fail clearly when `train` is absent."""
    found = {}
    for name in REQUIRED_CHANNELS:
        if name not in channel_dirs:
            raise DataError(
                f"The '{name}' channel is missing: expected class folders of images under "
                f"/opt/ml/input/data/{name} (got channels: {', '.join(sorted(channel_dirs)) or 'none'}). "
                f"Pass it as the '{name}' input of the training job."
            )
        path = Path(channel_dirs[name])
        if not path.is_dir():
            raise DataError(f"The '{name}' channel is configured but {path} does not exist: "
                            "was its data copied or mounted there?")
        found[name] = path
    for name, aliases in OPTIONAL_CHANNELS.items():
        for alias in aliases:
            if alias in channel_dirs and Path(channel_dirs[alias]).is_dir():
                found[name] = Path(channel_dirs[alias])
                break
    return found


def read_rgb(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def has_image_extension(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _check(path: str, decode: bool) -> np.ndarray | bool:
    """The decoded RGB array (decode) or True (header and data verified); False when unreadable."""
    try:
        if decode:
            return read_rgb(path)
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # any decoder complaint means the file is unusable
        return False


class ClassFolders(ImageFolder):
    """ImageFolder whose classes can be given (so every split shares one index), that drops
    unreadable images, and that can hold all images decoded in memory."""

    def __init__(self, root: Path, transform, classes: list[str] | None = None):
        self._given_classes = classes
        self.arrays: list[np.ndarray] | None = None
        super().__init__(str(root), transform=transform, loader=read_rgb,
                         is_valid_file=has_image_extension, allow_empty=classes is not None)

    def find_classes(self, directory: str):
        if self._given_classes is None:
            return super().find_classes(directory)
        extra = sorted(e.name for e in os.scandir(directory) if e.is_dir() and e.name not in self._given_classes)
        if extra:
            raise DataError(
                f"{directory} has class folder(s) {', '.join(extra)} that the training channel lacks; "
                "every class must have training images."
            )
        return self._given_classes, {name: i for i, name in enumerate(self._given_classes)}

    def scan(self, cache_bytes: int, max_bad_fraction: float, threads: int) -> None:
        """Read every image once: drop the unreadable ones (fatal above `max_bad_fraction`) and,
        when the decoded images fit in `cache_bytes`, keep them in memory for all epochs."""
        paths = [path for path, _ in self.samples]
        sample = [a for a in map(read_rgb_or_none, paths[:: max(1, len(paths) // 16)]) if a is not None]
        estimate = len(paths) * (sum(a.nbytes for a in sample) / max(len(sample), 1))
        decode = estimate <= cache_bytes
        with ThreadPoolExecutor(threads) as pool:  # Pillow decodes without holding the GIL
            results = list(pool.map(_check, paths, [decode] * len(paths), chunksize=64))
        bad = [path for path, ok in zip(paths, results) if ok is False]
        if bad:
            logger.warning("%s: skipping %d unreadable image(s), e.g. %s", self.root, len(bad), bad[:3])
            if len(bad) > max_bad_fraction * len(paths):
                raise DataError(
                    f"{len(bad)} of {len(paths)} images in {self.root} cannot be read (e.g. {', '.join(bad[:3])}); "
                    f"more than the allowed {max_bad_fraction:.1%} (max_bad_image_fraction)."
                )
        keep = [i for i, ok in enumerate(results) if ok is not False]
        self.samples = [self.samples[i] for i in keep]
        self.targets = [s[1] for s in self.samples]
        self.imgs = self.samples
        if decode:
            self.arrays = [results[i] for i in keep]
        logger.info("%s: %d images%s", self.root, len(self.samples),
                    f", {sum(a.nbytes for a in self.arrays) / 2**20:.0f} MiB decoded in memory" if decode else "")

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays or [])

    def __getitem__(self, index: int):
        if self.arrays is None:
            return super().__getitem__(index)
        array, target = self.arrays[index], self.targets[index]
        return (self.transform(array) if self.transform else array), target


def read_rgb_or_none(path: str) -> np.ndarray | None:
    try:
        return read_rgb(path)
    except Exception:
        return None


def train_transform(prep: Preprocessing, hp) -> A.Compose:
    """The training augmentation, chosen and tuned by hyperparameters (see hyperparameters.py)."""
    if prep.crop_size <= 64:  # small images: pad-and-crop keeps the whole object in view
        pad = hp.crop_padding if hp.crop_padding >= 0 else prep.crop_size // 8
        steps = [A.SmallestMaxSize(max_size=prep.resize_size), A.CenterCrop(prep.resize_size, prep.resize_size),
                 A.PadIfNeeded(prep.resize_size + 2 * pad, prep.resize_size + 2 * pad, border_mode=0, fill=0),
                 A.RandomCrop(prep.crop_size, prep.crop_size)]
    else:
        steps = [A.RandomResizedCrop(size=(prep.crop_size, prep.crop_size), scale=(hp.crop_scale_min, 1.0))]
    if hp.hflip:
        steps.append(A.HorizontalFlip())
    if hp.rotation:
        steps.append(A.Rotate(limit=hp.rotation, border_mode=0, fill=0))
    if hp.color_jitter:
        c = hp.color_jitter
        steps.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=0.0, p=0.8))
    if hp.cutout_size:
        size = (hp.cutout_size, hp.cutout_size)
        steps.append(A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=size, hole_width_range=size,
                                     fill=0, p=1.0))
    # No Normalize/ToTensor here: workers hand over uint8 images (a quarter of the bytes) and
    # the training step normalises the whole batch at once (see engine.BatchNormalizer).
    return A.Compose(steps)


class EvalTransform:
    """The shared eval transform on a loaded RGB array (picklable for loader workers)."""

    def __init__(self, prep: Preprocessing):
        self.prep = prep

    def __call__(self, array: np.ndarray) -> torch.Tensor:
        return eval_transform(Image.fromarray(array), self.prep)


def open_split(path: Path, split: str, transform, classes: list[str] | None = None):
    """A channel's images in whichever format it holds (class folders, CIFAR-100, IDX)."""
    kind = formats.detect(path)
    if kind == "folders":
        return ClassFolders(path, transform, classes=classes)
    dataset = formats.READERS[kind](path, split, transform)
    if classes is not None and dataset.classes != classes:
        raise DataError(f"The '{split}' channel's classes differ from the training channel's.")
    return dataset


def load_splits(channels: dict[str, Path], prep: Preprocessing, cache_bytes: int = 0,
                max_bad_fraction: float = 0.0, threads: int = 1) -> dict:
    """train: un-augmented (array, label) pairs; valid/test: eval-transformed tensors."""
    try:
        train = open_split(channels["train"], "train", transform=None)
    except FileNotFoundError as error:
        raise DataError(f"The 'train' channel has no usable images: {error}") from None
    splits = {"train": train}
    for name in ("valid", "test"):
        if name in channels:
            splits[name] = open_split(channels[name], name, EvalTransform(prep), classes=train.classes)
    for split in splits.values():
        split.scan(cache_bytes, max_bad_fraction, threads)
        cache_bytes -= split.memory_bytes()
    if not len(splits["train"]):
        raise DataError(f"The 'train' channel has no readable images in {channels['train']}.")
    return splits


def _loader(dataset, batch_size: int, workers: int, **kwargs) -> DataLoader:
    # An own generator: otherwise starting the worker processes draws from the global
    # torch RNG (which dropout uses), and a resumed run would draw at another moment.
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(0), **kwargs)


def train_loader(train, prep: Preprocessing, hp, workers: int, rank: int = 0,
                 world_size: int = 1) -> tuple[DataLoader, EpochSampler]:
    """Augmented, shuffled batches; the sampler sets the epoch (and the resume offset).
    batch_size is the global batch: each of world_size ranks loads its share of it."""
    sampler = EpochSampler(len(train), hp.seed, rank=rank, world_size=world_size)
    dataset = SeededAugmentation(train, train_transform(prep, hp))
    batch_size = hp.batch_size // world_size
    loader = _loader(dataset, batch_size, workers, sampler=sampler, drop_last=len(sampler) > batch_size,
                     collate_fn=collate_uint8)
    return loader, sampler


def collate_uint8(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8 arrays -> a (B, H, W, 3) uint8 tensor and the labels."""
    images = torch.from_numpy(np.stack([image for image, _ in batch]))
    return images, torch.tensor([label for _, label in batch])


def eval_loader(dataset, batch_size: int, workers: int) -> DataLoader:
    return _loader(dataset, batch_size, workers, shuffle=False)
