"""The splits' images: train (required), valid and test (optional); which channels exist is
channels.py's, other formats are formats.py's.

Each channel holds one folder per class, named like the dog-breed data set
(`001.Affenpinscher/`, `002.Afghan_hound/` ...; any folder name works). The
training channel defines the classes; the others are read with its class
indices, so a class missing from a small validation set shifts nothing.

How channels as people upload them are read (litter, names, layouts refused) is layouts.py's.
"""
import logging
import os
import stat
import threading
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from byoc.contract import Preprocessing
from byoc.preprocessing import eval_transform, to_rgb, upright
from byoc.training import formats, layouts
from byoc.training.errors import DataError
from byoc.training.sampling import EpochSampler, SeededAugmentation

logger = logging.getLogger(__name__)


def read_rgb(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(upright(to_rgb(image)))  # as serving converts it: 16-bit grey scaled, not clipped


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


def unreadable_note(bad: list[str]) -> str:
    """Why some of the unreadable images cannot be read, where their names tell."""
    photos = sum(path.lower().endswith(layouts.UNDECODABLE_PHOTOS) for path in bad)
    return (f" ({photos} of them HEIC/HEIF, a format this image cannot decode: convert them to JPEG, "
            "e.g. with macOS's `sips -s format jpeg`, or set the phone to save JPEG)") if photos else ""


class ClassFolders(ImageFolder):
    """ImageFolder whose classes can be given (so every split shares one index), that drops
    unreadable images, and that can hold all images decoded in memory. `split` names the channel
    in what the job says about it."""

    def __init__(self, root: Path, transform, classes: list[str] | None = None, split: str = "train"):
        self._given_classes, self.split = classes, split
        self.arrays: list[np.ndarray] | None = None
        self.not_images: list[str] = []  # files in class folders not named like images (make_dataset)
        super().__init__(str(root), transform=transform, loader=read_rgb,
                         is_valid_file=layouts.has_image_extension, allow_empty=True)

    def find_classes(self, directory: str):
        found = layouts.class_folders(directory)
        layouts.check_layout(directory, self.split, found, self._given_classes)
        if loose := layouts.loose_files(directory):
            logger.warning("%s: ignoring %d file(s) beside the class folders (only class folders are read): %s",
                           directory, len(loose), ", ".join(loose[:5]) + (", ..." if len(loose) > 5 else ""))
        if self._given_classes is None:
            layouts.check_distinct(directory, found)
            return found, {name: i for i, name in enumerate(found)}
        return self._given_classes, self.training_indices(directory, found)

    def training_indices(self, directory: str, found: list[str]) -> dict[str, int]:
        """Each folder here to its training class's index. Names match in NFC (the same text, whichever
        form the folder was made in), but not across case: on S3, Dog and dog are two prefixes."""
        index = {unicodedata.normalize("NFC", name): i for i, name in enumerate(self._given_classes)}
        extra = [name for name in found if unicodedata.normalize("NFC", name) not in index]
        if extra:
            same = layouts.same_name
            alike = {same(name): name for name in self._given_classes}
            hints = [f"{name} is {alike[same(name)]} there" for name in extra if same(name) in alike]
            raise DataError(
                f"{directory} has class folder(s) {', '.join(extra)} that the training channel lacks"
                + (f" ({'; '.join(hints)}: folder names must match, case included)" if hints else "")
                + "; every class must have training images."
            )
        return {name: index[unicodedata.normalize("NFC", name)] for name in found}

    def make_dataset(self, directory: str, class_to_idx: dict[str, int], extensions=None, is_valid_file=None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        """torchvision's, without litter and symlink loops (folder_files); a class may be empty here
        (check_classes_read says so after the scan, where unreadable images count as none)."""
        samples = []
        for name, index in sorted(class_to_idx.items()):
            for path in layouts.folder_files(os.path.join(directory, name)):
                if layouts.has_image_extension(path):
                    samples.append((path, index))
                else:
                    self.not_images.append(path)
        return samples

    def log_not_images(self) -> None:
        if self.not_images:
            kinds = Counter(os.path.splitext(path)[1].lower() for path in self.not_images)
            logger.warning("%s: skipping %d file(s) not named like images (%s), e.g. %s", self.root,
                           len(self.not_images), ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()),
                           self.not_images[:3])

    def scan(self, budget: DecodeBudget, max_bad_fraction: float, threads: int) -> None:
        """Decode every image once, whatever the cache (Image.verify() checks little beyond PNG): drop
        the unreadable ones (fatal above `max_bad_fraction`) and keep the decoded pixels of as many as
        the budget holds, so the loader reads only the rest from disk each epoch."""
        self.log_not_images()
        paths = [path for path, _ in self.samples]
        with ThreadPoolExecutor(threads) as pool:  # Pillow decodes without holding the GIL
            results = list(pool.map(decode_or_fail, paths, [budget] * len(paths), chunksize=64))
        bad = [path for path, ok in zip(paths, results) if ok is False]
        if bad:
            why = unreadable_note(bad)
            logger.warning("%s: skipping %d unreadable image(s)%s, e.g. %s", self.root, len(bad), why, bad[:3])
            if len(bad) > max_bad_fraction * len(paths):
                raise DataError(
                    f"{len(bad)} of {len(paths)} images in {self.root} cannot be read{why} (e.g. "
                    f"{', '.join(bad[:3])}); more than the allowed {max_bad_fraction:.1%} (max_bad_image_fraction)."
                )
        self.check_classes_read(results)
        kept = [result for result in results if result is not False]
        self.samples = [sample for sample, result in zip(self.samples, results) if result is not False]
        self.targets = [s[1] for s in self.samples]
        self.imgs = self.samples
        self.arrays = [result if isinstance(result, np.ndarray) else None for result in kept]
        cached = sum(a is not None for a in self.arrays)
        logger.info("%s: %d images, %d of them decoded in memory (%.0f MiB)", self.root, len(self.samples), cached,
                    self.memory_bytes() / 2**20)

    def check_classes_read(self, results: list) -> None:
        """Every training class folder must give readable images: a class the model never sees
        would still be one of its answers. (Given classes: a sharded host may lack some.)"""
        if self._given_classes is not None:
            return
        read = {index for (_, index), result in zip(self.samples, results) if result is not False}
        empty = [name for index, name in enumerate(self.classes) if index not in read]
        if empty:
            tried = Counter(self.classes[index] for _, index in self.samples)
            others = Counter(os.path.relpath(path, self.root).split(os.sep)[0] for path in self.not_images)
            held = "; ".join(f"{name}/: {tried[name]} unreadable image(s), {others[name]} other file(s)"
                             for name in empty[:5])
            raise DataError(
                f"The '{self.split}' channel has no usable images in class folder(s) {', '.join(empty[:5])}"
                f"{', ...' if len(empty) > 5 else ''} of {self.root} ({held}). Add readable images (JPEG, PNG, "
                "...) to each, or remove the folder if it is not a class."
            )

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
        return ClassFolders(path, transform, classes=classes, split=split)
    dataset = formats.READERS[kind](path, split, transform)
    if classes is not None and dataset.classes != classes:
        raise DataError(f"The '{split}' channel's classes differ from the training channel's.")
    return dataset


def load_splits(channels: dict[str, Path], prep: Preprocessing, cache_bytes: int = 0,
                max_bad_fraction: float = 0.0, threads: int = 1, classes: list[str] | None = None) -> dict:
    """train: un-augmented (array, label) pairs; valid/test: eval-transformed tensors. `classes`: the
    training classes when they are known beforehand (a sharded channel: every host's folders)."""
    train = open_split(channels["train"], "train", transform=None, classes=classes)
    if len(train.classes) < 2:  # before the scan: no point decoding a data set that cannot be used
        raise DataError(
            f"The 'train' channel {channels['train']} gives only the class {', '.join(train.classes)}: a "
            "classifier needs at least two, one folder of images each (001.Affenpinscher/, 002.Afghan_hound/, ...)."
        )
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
