"""Channels as inputdataconfig.json describes them: File and FastFile folders are read, Pipe
streams and what FastFile cannot mount are refused in one paragraph before training."""
import os

import pytest

from byoc.training import channels
from byoc.training.errors import ConfigError, DataError


def config(mode="File", distribution="FullyReplicated") -> dict:
    """A channel's entry, as SageMaker writes it."""
    return {"TrainingInputMode": mode, "S3DistributionType": distribution, "RecordWrapperType": "None"}


def test_missing_train_channel_says_what_to_pass():
    with pytest.raises(DataError, match="'train' channel is missing.*got channels: test, valid"):
        channels.find_channels({"valid": "/nonexistent", "test": "/nonexistent"})


def test_validation_alias_is_accepted(small_data):
    found = channels.find_channels({"train": small_data / "train", "validation": small_data / "valid"})
    assert found["valid"].path == small_data / "valid" and found["valid"].name == "validation"


def test_configured_but_absent_channel_folder_is_explained(tmp_path):
    with pytest.raises(DataError, match="'train' channel is configured but .*/nothing does not exist"):
        channels.find_channels({"train": str(tmp_path / "nothing")})


def test_modes_and_distribution_are_read(small_data):
    found = channels.find_channels(
        {name: small_data / name for name in ("train", "valid", "test")},
        {"train": config("FastFile", "ShardedByS3Key"), "valid": config(distribution="ShardedByS3Key"), "test": {}})
    assert (found["train"].mode, found["train"].sharded, found["train"].distribution) == (
        "FastFile", True, "ShardedByS3Key")
    assert found["valid"].sharded and not found["test"].sharded and found["test"].mode == "File"


@pytest.mark.parametrize("piped", ["train", "test", "pretrained"])
def test_pipe_mode_is_refused_for_any_channel(small_data, tmp_path, piped):
    """Pipe mode leaves FIFOs named <channel>_<epoch> and no folder; any channel in Pipe mode is refused."""
    dirs = {"train": small_data / "train", "test": small_data / "test", "pretrained": tmp_path / "pretrained"}
    os.mkfifo(tmp_path / f"{piped}_0")
    with pytest.raises(DataError) as error:
        channels.find_channels({k: str(v) for k, v in dirs.items()}, {piped: config("Pipe")})
    message = str(error.value)
    assert f"Channel(s) {piped} use TrainingInputMode=Pipe" in message
    assert f"/opt/ml/input/data/{piped}_0" in message and "Use File mode" in message and "FastFile" in message
    assert "\n" not in message


def test_a_fastfile_channel_that_is_not_a_folder_is_refused(small_data, tmp_path):
    manifest = tmp_path / "train"
    manifest.write_text('[{"prefix": "s3://bucket/"}]')  # what a manifest channel would leave
    with pytest.raises(DataError, match=r"'train' channel is in FastFile mode but .*/train is not a folder.*"
                                        r"S3DataType=S3Prefix.*or use File mode"):
        channels.find_channels({"train": str(manifest)}, {"train": config("FastFile")})


def test_a_fastfile_folder_is_read_like_a_file_channel(small_data):
    found = channels.find_channels({"train": str(small_data / "train")}, {"train": config("FastFile")})
    assert found["train"].path == small_data / "train"


@pytest.mark.parametrize("entry", ["File", ["File"], None])
def test_a_channel_entry_that_is_not_an_object_is_named(small_data, entry):
    with pytest.raises(ConfigError, match="inputdataconfig.json: channel 'train' is .*, not an object of settings"):
        channels.find_channels({"train": small_data / "train"}, {"train": entry})


def test_channels_the_image_does_not_read_are_named_once(small_data, caplog):
    dirs = {"train": small_data / "train", "valid": small_data / "valid", "validation": small_data / "valid",
            "eval": small_data / "test", "pretrained": "/nonexistent"}
    channels.log_unread(dirs, channels.find_channels(dirs))
    unread = [r.message for r in caplog.records if "not read by this image" in r.message]
    assert unread == ["channel(s) eval, validation are not read by this image, which reads train, valid (or "
                      "validation), test and pretrained"]
