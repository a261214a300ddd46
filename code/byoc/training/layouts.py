"""Channels as people upload them (`aws s3 sync`, `upload_data`, an unzipped archive): which
entries are classes and images, and the layouts that cannot be class folders.

- Tools' litter is never a class or an image, and goes unmentioned: hidden entries
  (`.DS_Store`, `.ipynb_checkpoints/`, macOS's `._photo.jpg`), `__MACOSX/`, `@eaDir/`,
  `lost+found/`, `$RECYCLE.BIN/`, `System Volume Information/`, `Thumbs.db`, `desktop.ini`, `Icon\r`.
- Another channel's folders match the training classes in NFC (a folder made on macOS may be in
  NFD), never across case; class labels are NFC (contract.display_name).
- Images are the files whose extension Pillow reads (any case: `.JPG`, `.jfif`, `.avif`, ...)
  and files with no extension; every one is decoded by the scan, so a JPEG named `.png` is
  read and an unreadable file (truncated, empty, HEIC/HEIF, which Pillow cannot decode) is
  skipped and counted, up to `max_bad_image_fraction`. Other files in class folders (`.txt`,
  `.xml`, ...) are skipped, and counted in one log line; so are files beside the class folders.
- Refused, in one paragraph that names the folder: a channel of split folders (`train/`,
  `valid/`, `test/`: one channel each), one extra level (`dogImages/` or `cifar-100-python/`
  alone in the channel: point the channel at it), images or an archive but no class folders,
  fewer than two training classes, class folders that differ only in case or Unicode form
  (`Dog`/`dog`, one folder on macOS and Windows), and a training class with no readable image.
"""
import os
import unicodedata
from pathlib import Path

from PIL import Image

from byoc.training import formats
from byoc.training.errors import DataError

UNDECODABLE_PHOTOS = (".heic", ".heif")  # phones' photos: counted as images, then as unreadable ones, by name
IMAGE_EXTENSIONS = tuple(sorted(extension for extension, kind in Image.registered_extensions().items()
                                if kind in Image.OPEN)) + UNDECODABLE_PHOTOS
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tgz", ".gz", ".7z", ".rar")
# What archivers, file systems, NAS and desktops leave behind (hidden names aside).
LITTER = {"__MACOSX", "@eaDir", "#recycle", "lost+found", "$RECYCLE.BIN", "System Volume Information",
          "Thumbs.db", "ehthumbs.db", "desktop.ini", "Icon\r"}
SPLIT_NAMES = {"train", "training", "valid", "validation", "val", "dev", "test", "testing", "eval"}


def has_image_extension(path: str) -> bool:
    """Named like an image, or not named at all (a download saved without an extension)."""
    extension = os.path.splitext(os.path.basename(path))[1]
    return not extension or extension.lower() in IMAGE_EXTENSIONS


def visible(name: str) -> bool:
    """Hidden entries (.ipynb_checkpoints/, macOS's ._photo.jpg) and tools' litter (__MACOSX/,
    Thumbs.db) are never classes or images."""
    return not name.startswith(".") and name not in LITTER


def class_folders(directory) -> list[str]:
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and visible(entry.name))


def loose_files(directory) -> list[str]:
    """Files beside the class folders (README.txt, labels.csv, an archive): never read."""
    return sorted(entry.name for entry in os.scandir(directory) if not entry.is_dir() and visible(entry.name))


def folder_files(folder: str) -> list[str]:
    """Every file under a class folder but litter, in torchvision's order (sorted folders, then names).
    A folder symlink is followed, but never into a folder already walked: a loop (loop -> .) would
    otherwise repeat every image once per level, down to the system's limit on symlinks."""
    walked, found = set(), []
    for root, dirs, files in os.walk(folder, followlinks=True):
        where = os.stat(root)
        if (where.st_dev, where.st_ino) in walked:
            dirs.clear()
            continue
        walked.add((where.st_dev, where.st_ino))
        dirs[:] = [name for name in dirs if visible(name)]
        found.append((root, sorted(name for name in files if visible(name))))
    return [os.path.join(root, name) for root, names in sorted(found) for name in names]


def same_name(name: str) -> str:
    """What a class folder is called on macOS and Windows, which ignore case and Unicode form."""
    return unicodedata.normalize("NFC", name).casefold()


def check_distinct(directory, folders: list[str]) -> None:
    """`Dog` and `dog` (or `Café` in macOS's NFD and in NFC) are two folders only on a case-sensitive
    file system such as S3's: almost surely one class split in two, which would compete with itself."""
    groups = {}
    for name in folders:
        groups.setdefault(same_name(name), []).append(name)
    alike = [names for names in groups.values() if len(names) > 1]
    if alike:
        raise DataError(
            f"{directory} has class folders that differ only in case or Unicode form ("
            + "; ".join(" and ".join(repr(n) for n in names) for names in alike)
            + "): on macOS and Windows they would be one folder. Merge them into one folder per class."
        )


def without_class_folders(files: list[str]) -> str:
    """What a channel with no class folders holds instead, as the refusal says it."""
    archives = [name for name in files if name.lower().endswith(ARCHIVE_EXTENSIONS)]
    if archives:
        return f"holds the archive(s) {', '.join(archives[:3])}: extract them and upload the class folders"
    images = [name for name in files if has_image_extension(name)]
    if images:
        return f"holds {len(images)} image file(s) (e.g. {images[0]}) but no class folders"
    return "holds no folders"


def check_layout(directory, split: str, folders: list[str], classes: list[str] | None) -> None:
    """A channel must hold the class folders themselves: not the splits, not a folder above them,
    not loose images. `classes`: the training classes where known beforehand (another channel than
    train, or a sharded one, whose host may hold no folder at all)."""
    if not folders:
        files = loose_files(directory)
        if classes is None or files:
            raise DataError(f"The '{split}' channel {directory} {without_class_folders(files)}; it needs one "
                            "folder of images per class (001.Affenpinscher/, 002.Afghan_hound/, ...).")
        return
    splits = [name for name in folders if name.lower() in SPLIT_NAMES]
    if splits and len(splits) == len(folders):
        raise DataError(
            f"The '{split}' channel {directory} holds the split folder(s) {', '.join(splits)}, not class folders. "
            "Pass each split as its own channel (train, valid, test), each pointed at the folder that holds the "
            "class folders."
        )
    if len(folders) == 1 and (classes is None or folders[0] not in classes):
        check_one_level(directory, split, folders[0])


def check_one_level(directory, split: str, only: str) -> None:
    """A channel whose one folder holds what the channel should (an archive's top folder such as
    `dogImages/`, or `cifar-100-python/`) is one level too deep."""
    inside = Path(directory, only)
    below, kind = class_folders(inside), formats.detect(inside)
    if kind != "folders":
        held = f"{kind} files"
    elif below and not any(has_image_extension(name) for name in loose_files(inside)):
        held = f"folders ({', '.join(below[:3])}{', ...' if len(below) > 3 else ''}) rather than images"
    else:
        return
    if below and all(name.lower() in SPLIT_NAMES for name in below):
        where = f"pass each of {', '.join(f'{only}/{name}/' for name in below)} as its own channel"
    else:
        where = f"point the channel at {only}/ (or upload what it holds)"
    raise DataError(f"The '{split}' channel {directory} holds only the folder {only}/, which holds {held}: one "
                    f"level too many. For this job, {where}.")
