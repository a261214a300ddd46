"""The splits' images: train (required), valid and test (optional); which channels exist is
channels.py's, other formats are formats.py's.

Each channel holds one folder per class, named like the dog-breed data set
(`001.Affenpinscher/`, `002.Afghan_hound/` ...; any folder name works). The
training channel defines the classes; the others are read with its class
indices, so a class missing from a small validation set shifts nothing.
"""
import logging
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from byoc.contract import Preprocessing
from byoc.preprocessing import eval_transform, upright
from byoc.training import formats
from byoc.training.errors import DataError
from byoc.training.sampling import EpochSampler, SeededAugmentation

logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_rgb(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(upright(image.convert("RGB")))


def has_image_extension(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def visible(name: str) -> bool:
    """Hidden entries (.ipynb_checkpoints/, macOS's ._photo.jpg) are tools' litter: never classes or images."""
    return not name.startswith(".")


def class_folders(directory) -> list[str]:
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and visible(entry.name))


def image_files(folder: str) -> list[str]:
    """The image files under a class folder, in torchvision's order (sorted folders, then names). A folder
    symlink is followed, but never into a folder already walked: a loop (loop -> .) would otherwise
    repeat every image once per level, down to the system's limit on symlinks."""
    walked, found = set(), []
    for root, dirs, files in os.walk(folder, followlinks=True):
        where = os.stat(root)
        if (where.st_dev, where.st_ino) in walked:
            dirs.clear()
            continue
        walked.add((where.st_dev, where.st_ino))
        dirs[:] = [name for name in dirs if visible(name)]
        found.append((root, sorted(name for name in files if visible(name) and has_image_extension(name))))
    return [os.path.join(root, name) for root, names in sorted(found) for name in names]


class DecodeBudget:
    """Bytes of decoded pixels the scan may keep; the scan's threads draw from it under a lock."""

    def __init__(self, limit: int):
        self.left = limit
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Keep `size` more bytes if they fit."""
        with self._lock:
            if size > self.left:
                return False
            self.left -= size
            return True

    def spend(self, size: int) -> None:
        """Bytes held anyway (a format read into memory whole)."""
        with self._lock:
            self.left -= size


def decode_or_fail(path: str, budget: DecodeBudget) -> np.ndarray | bool:
    """Decode one image fully, the way the loader will: the array when the budget keeps it, True
    when it decoded but is not kept, False when it cannot be read (any decoder complaint, or not a
    regular file: opening a FIFO or a device named like an image would block the scan forever)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        array = read_rgb(path)
    except Exception:
        return False
    return array if budget.take(array.nbytes) else True


class ClassFolders(ImageFolder):
    """ImageFolder whose classes can be given (so every split shares one index), that drops
    unreadable images, and that can hold all images decoded in memory."""

    def __init__(self, root: Path, transform, classes: list[str] | None = None):
        self._given_classes = classes
        self.arrays: list[np.ndarray] | None = None
        super().__init__(str(root), transform=transform, loader=read_rgb,
                         is_valid_file=has_image_extension, allow_empty=classes is not None)

    def find_classes(self, directory: str):
        found = class_folders(directory)
        if self._given_classes is None:
            if not found:
                raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
            return found, {name: i for i, name in enumerate(found)}
        extra = [name for name in found if name not in self._given_classes]
        if extra:
            raise DataError(
                f"{directory} has class folder(s) {', '.join(extra)} that the training channel lacks; "
                "every class must have training images."
            )
        return self._given_classes, {name: i for i, name in enumerate(self._given_classes)}

    def make_dataset(self, directory: str, class_to_idx: dict[str, int], extensions=None, is_valid_file=None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        """torchvision's, without hidden entries and symlink loops (image_files)."""
        samples = [(path, index) for name, index in sorted(class_to_idx.items())
                   for path in image_files(os.path.join(directory, name))]
        filled = {index for _, index in samples}
        empty = sorted(name for name, index in class_to_idx.items() if index not in filled)
        if empty and not allow_empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}.")
        return samples

    def scan(self, budget: DecodeBudget, max_bad_fraction: float, threads: int) -> None:
        """Decode every image once, whatever the cache (Image.verify() checks little beyond PNG): drop
        the unreadable ones (fatal above `max_bad_fraction`) and keep the decoded pixels of as many as
        the budget holds, so the loader reads only the rest from disk each epoch."""
        paths = [path for path, _ in self.samples]
        with ThreadPoolExecutor(threads) as pool:  # Pillow decodes without holding the GIL
            results = list(pool.map(decode_or_fail, paths, [budget] * len(paths), chunksize=64))
        bad = [path for path, ok in zip(paths, results) if ok is False]
        if bad:
            logger.warning("%s: skipping %d unreadable image(s), e.g. %s", self.root, len(bad), bad[:3])
            if len(bad) > max_bad_fraction * len(paths):
                raise DataError(
                    f"{len(bad)} of {len(paths)} images in {self.root} cannot be read (e.g. {', '.join(bad[:3])}); "
                    f"more than the allowed {max_bad_fraction:.1%} (max_bad_image_fraction)."
                )
        kept = [result for result in results if result is not False]
        self.samples = [sample for sample, result in zip(self.samples, results) if result is not False]
        self.targets = [s[1] for s in self.samples]
        self.imgs = self.samples
        self.arrays = [result if isinstance(result, np.ndarray) else None for result in kept]
        cached = sum(a is not None for a in self.arrays)
        logger.info("%s: %d images, %d of them decoded in memory (%.0f MiB)", self.root, len(self.samples), cached,
                    self.memory_bytes() / 2**20)

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays or [] if a is not None)

    def __getitem__(self, index: int):
        array = self.arrays[index] if self.arrays is not None else None
        if array is None:  # not kept in memory: decoded from disk, as the scan did
            return super().__getitem__(index)
        target = self.targets[index]
        return (self.transform(array) if self.transform else array), target


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
                max_bad_fraction: float = 0.0, threads: int = 1, classes: list[str] | None = None) -> dict:
    """train: un-augmented (array, label) pairs; valid/test: eval-transformed tensors. `classes`: the
    training classes when they are known beforehand (a sharded channel: every host's folders)."""
    try:
        train = open_split(channels["train"], "train", transform=None, classes=classes)
    except FileNotFoundError as error:
        raise DataError(f"The 'train' channel has no usable images: {error}") from None
    splits = {"train": train}
    for name in ("valid", "test"):
        if name in channels:
            splits[name] = open_split(channels[name], name, EvalTransform(prep), classes=train.classes)
    budget = DecodeBudget(cache_bytes)  # shared: the training split draws from it first
    for split in splits.values():
        split.scan(budget, max_bad_fraction, threads)
    if not len(splits["train"]):
        raise DataError(f"The 'train' channel has no readable images in {channels['train']}.")
    return splits


def _loader(dataset, batch_size: int, workers: int, **kwargs) -> DataLoader:
    # An own generator: otherwise starting the worker processes draws from the global
    # torch RNG (which dropout uses), and a resumed run would draw at another moment.
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(0), **kwargs)


def train_loader(train, prep: Preprocessing, hp, workers: int, rank: int = 0, world_size: int = 1,
                 batch_size: int | None = None, steps: int | None = None) -> tuple[DataLoader, EpochSampler]:
    """Augmented, shuffled batches; the sampler sets the epoch (and the resume offset). This
    process is `rank` of the `world_size` sharing these files; it loads `batch_size` images a step
    (its share of the global batch; default: hp.batch_size // world_size), `steps` a full epoch."""
    batch_size = batch_size or hp.batch_size // world_size
    sampler = EpochSampler(len(train), hp.seed, rank=rank, world_size=world_size,
                           per_epoch=None if steps is None else steps * batch_size)
    dataset = SeededAugmentation(train, train_transform(prep, hp))
    loader = _loader(dataset, batch_size, workers, sampler=sampler, drop_last=len(sampler) > batch_size,
                     collate_fn=collate_uint8)
    return loader, sampler


def collate_uint8(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8 arrays -> a (B, H, W, 3) uint8 tensor and the labels."""
    images = torch.from_numpy(np.stack([image for image, _ in batch]))
    return images, torch.tensor([label for _, label in batch])


def eval_loader(dataset, batch_size: int, workers: int) -> DataLoader:
    return _loader(dataset, batch_size, workers, shuffle=False)
