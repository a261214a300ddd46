import os
import shutil
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from byoc import contract
from byoc.contract import Preprocessing
from byoc.preprocessing import eval_transform
from byoc.training import data, distributed, shards
from byoc.training.channels import Channel
from byoc.training.data import ClassFolders
from byoc.training.engine import BatchNormalizer
from byoc.training.errors import DataError


def test_display_names_drop_the_number_prefix():
    assert contract.display_name("001.T-shirt_top") == "T-shirt top"
    assert contract.display_name("Golden_retriever") == "Golden retriever"


def test_splits_share_the_training_class_index(small_data, tmp_path):
    valid = tmp_path / "valid"
    shutil.copytree(small_data / "valid" / "010.Ankle_boot", valid / "010.Ankle_boot")
    splits = data.load_splits({"train": small_data / "train", "valid": valid}, Preprocessing(28, 28))
    _, label = splits["valid"][0]
    assert label == 9 and splits["train"].classes[9] == "010.Ankle_boot"
    image, _ = splits["train"][0]
    assert image.shape == (28, 28, 3)  # training images are augmented later, per sample


def test_a_class_without_training_images_is_refused(small_data, tmp_path):
    (tmp_path / "valid" / "011.Unicorn").mkdir(parents=True)
    with pytest.raises(DataError, match="011.Unicorn that the training channel lacks"):
        data.load_splits({"train": small_data / "train", "valid": tmp_path / "valid"}, Preprocessing(28, 28))


def test_empty_train_channel_is_a_data_error(tmp_path):
    (tmp_path / "001.A").mkdir()
    (tmp_path / "002.B").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        data.load_splits({"train": tmp_path}, Preprocessing(28, 28))


def copy_classes(small_data, tmp_path, per_class=20):
    for folder in sorted((small_data / "train").iterdir())[:3]:
        (tmp_path / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.png"))[:per_class]:
            shutil.copy(image, tmp_path / folder.name / image.name)
    return tmp_path


def test_unreadable_images_are_skipped_and_counted(small_data, tmp_path, caplog):
    root = copy_classes(small_data, tmp_path / "train")
    (root / "001.T-shirt_top" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    splits = data.load_splits({"train": root}, Preprocessing(28, 28), max_bad_fraction=0.05)
    assert len(splits["train"]) == 60
    assert "skipping 1 unreadable image(s)" in caplog.text and "broken.png" in caplog.text


def test_too_many_unreadable_images_fail_the_job(small_data, tmp_path):
    root = copy_classes(small_data, tmp_path / "train", per_class=5)
    for i in range(3):
        (root / "002.Trouser" / f"broken{i}.jpg").write_bytes(b"nothing")
    with pytest.raises(DataError, match=r"3 of 18 images .* cannot be read .*more than the allowed 5.0%"):
        data.load_splits({"train": root}, Preprocessing(28, 28), max_bad_fraction=0.05)


def test_images_are_decoded_once_when_they_fit(small_data, tmp_path):
    root = copy_classes(small_data, tmp_path / "train")
    cached = data.load_splits({"train": root}, Preprocessing(28, 28), cache_bytes=10**6)["train"]
    uncached = data.load_splits({"train": root}, Preprocessing(28, 28), cache_bytes=0)["train"]
    assert all(a is not None for a in cached.arrays) and all(a is None for a in uncached.arrays)
    for i in (0, 31, 59):
        assert np.array_equal(cached[i][0], uncached[i][0]) and cached[i][1] == uncached[i][1]


def test_training_batches_are_normalised_exactly_as_served(small_data):
    """Train/serve parity: the batch normaliser matches the serving transform on un-augmented images."""
    prep = Preprocessing(28, 28)
    folder = ClassFolders(small_data / "test", transform=None)
    arrays = [folder[i][0] for i in range(4)]
    batch, _ = data.collate_uint8([(a, 0) for a in arrays])
    normalised = BatchNormalizer(prep.mean, prep.std, torch.device("cpu"), channels_last=True)(batch)
    served = torch.stack([eval_transform(Image.fromarray(a), prep) for a in arrays])
    torch.testing.assert_close(normalised, served, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("content", ["no images", "only unreadable images"])
def test_an_empty_validation_channel_fails_before_training(small_data, tmp_path, content):
    (tmp_path / "valid" / "001.T-shirt_top").mkdir(parents=True)
    if content == "only unreadable images":
        (tmp_path / "valid" / "001.T-shirt_top" / "broken.png").write_bytes(b"not a png")
    channels = {"train": Channel("train", small_data / "train"), "valid": Channel("valid", tmp_path / "valid")}
    splits = data.load_splits({name: c.path for name, c in channels.items()}, Preprocessing(28, 28),
                              max_bad_fraction=1.0)
    with pytest.raises(DataError, match="The 'valid' channel .* has no readable images"):
        shards.data_report(splits, channels, distributed.SingleProcess("cpu"), "algo-1", steps=1, batch_size=8)


class Blocked(BaseException):
    """Not an Exception: the scan's `except Exception` must not swallow it."""


@pytest.fixture
def alarm():
    """Fails a test that blocks (in open() of a FIFO, say) instead of hanging the run."""
    def ring(*_):
        raise Blocked("blocked for 5 s")
    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_fifo_named_like_an_image_is_never_opened(tmp_path, alarm):
    os.mkfifo(tmp_path / "pipe.png")  # open() for reading would wait for a writer forever
    assert data.decode_or_fail(str(tmp_path / "pipe.png"), data.DecodeBudget(10**6)) is False


def test_non_regular_files_are_skipped_and_counted_like_unreadable_images(small_data, tmp_path, caplog, alarm):
    root = copy_classes(small_data, tmp_path / "train")
    os.mkfifo(root / "001.T-shirt_top" / "pipe.png")
    splits = data.load_splits({"train": root}, Preprocessing(28, 28), max_bad_fraction=0.05)
    assert len(splits["train"]) == 60
    assert "skipping 1 unreadable image(s)" in caplog.text and "pipe.png" in caplog.text


def test_hidden_folders_and_files_are_never_classes_or_images(small_data, tmp_path):
    root = copy_classes(small_data, tmp_path / "train", per_class=5)
    shutil.copytree(root / "001.T-shirt_top", root / ".ipynb_checkpoints")  # a notebook's litter, with images
    shutil.copytree(root / "001.T-shirt_top", root / "002.Trouser" / ".thumbnails")
    (root / "002.Trouser" / "._00001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS's resource fork
    splits = data.load_splits({"train": root}, Preprocessing(28, 28))
    assert splits["train"].classes == ["001.T-shirt_top", "002.Trouser", "003.Pullover"]
    assert len(splits["train"]) == 15 and not any("/." in path for path, _ in splits["train"].samples)


def test_a_symlink_loop_does_not_repeat_images(small_data, tmp_path):
    root = copy_classes(small_data, tmp_path / "train", per_class=5)
    os.symlink(".", root / "001.T-shirt_top" / "loop")
    os.symlink("../003.Pullover", root / "002.Trouser" / "pullovers")  # another folder: followed, read there too
    splits = data.load_splits({"train": root}, Preprocessing(28, 28))
    assert [label for _, label in splits["train"].samples].count(0) == 5
    assert len(splits["train"]) == 20
