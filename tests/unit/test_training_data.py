import shutil

import pytest

from byoc.preprocessing import Preprocessing
from byoc.training import data
from byoc.training.errors import DataError


def test_display_names_drop_the_number_prefix():
    assert data.display_name("001.T-shirt_top") == "T-shirt top"
    assert data.display_name("Golden_retriever") == "Golden retriever"


def test_missing_train_channel_says_what_to_pass():
    with pytest.raises(DataError, match="'train' channel is missing.*got channels: test, valid"):
        data.find_channels({"valid": "/nonexistent", "test": "/nonexistent"})


def test_validation_alias_is_accepted(small_data):
    channels = data.find_channels({"train": small_data / "train", "validation": small_data / "valid"})
    assert channels["valid"] == small_data / "valid"


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
    with pytest.raises(DataError, match="no usable images"):
        data.load_splits({"train": tmp_path}, Preprocessing(28, 28))
