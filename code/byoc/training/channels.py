"""The job's input channels as SageMaker hands them over, checked before anything waits.

inputdataconfig.json says, per channel, how it arrives (TrainingInputMode) and how S3 objects
are spread over the hosts (S3DistributionType):

- File: copied to /opt/ml/input/data/<channel> before the container starts.
- FastFile: an S3 prefix mounted read-only at the same path and streamed on first read; a
  folder like File's, read the same way.
- Pipe: a FIFO per pass, /opt/ml/input/data/<channel>_<epoch>; a stream, not files. Refused.
- FullyReplicated: every host has every object. ShardedByS3Key: each host about 1/N of them
  (shards.py splits the training work accordingly).
"""
import logging
from dataclasses import dataclass
from pathlib import Path

from byoc.training import preflight
from byoc.training.errors import DataError

REQUIRED = ("train",)
OPTIONAL = {"valid": ("valid", "validation"), "test": ("test",)}  # ours -> the names SageMaker may use
ELSEWHERE = ("pretrained",)  # read by pretrained.py, when pretrained_weights names a file
SHARDED = "ShardedByS3Key"

logger = logging.getLogger("byoc.training")


@dataclass(frozen=True)
class Channel:
    name: str  # as configured ('validation' serves as our 'valid')
    path: Path
    mode: str = "File"
    sharded: bool = False

    @property
    def distribution(self) -> str:
        return SHARDED if self.sharded else "FullyReplicated"


def _describe(name: str, path: str, config: dict) -> Channel:
    return Channel(name, Path(path), config.get("TrainingInputMode") or "File",
                   config.get("S3DistributionType") == SHARDED)


def refuse_streams(channels: dict[str, Channel]) -> None:
    """Pipe mode delivers a channel as FIFOs; every channel here is read as files."""
    piped = sorted(name for name, channel in channels.items() if channel.mode == "Pipe")
    if piped:
        name = piped[0]
        raise DataError(
            f"Channel(s) {', '.join(piped)} use TrainingInputMode=Pipe, which streams each pass through a FIFO "
            f"(/opt/ml/input/data/{name}_0, {name}_1, ...); this image reads folders of image files. Use File "
            "mode (the data is copied before training starts) or FastFile (S3 objects streamed on first read "
            "through a read-only folder): InputMode in the job's channel, input_mode= in the SageMaker SDK."
        )


def folder(channel: Channel, ours: str) -> Path:
    """The channel's folder, or a DataError saying why there is none."""
    if channel.path.is_dir():
        return channel.path
    if channel.mode == "FastFile":
        raise DataError(
            f"The '{channel.name}' channel is in FastFile mode but {channel.path} is not a folder: FastFile "
            "mounts an S3 prefix (S3DataType=S3Prefix, ideally ending in '/') as a read-only folder, and a "
            "manifest or a partial key cannot be mounted that way. Point the channel at the prefix that holds "
            "the class folders, or use File mode."
        )
    raise DataError(f"The '{channel.name}' channel is configured but {channel.path} does not exist: "
                    f"was its data copied or mounted there? (it is read as the '{ours}' split)")


def find_channels(channel_dirs: dict[str, str], input_config: dict | None = None) -> dict[str, Channel]:
    """Our splits (train, and valid/test where given) as checked Channels. `channel_dirs` and
    `input_config` are sagemaker-training's env.channel_input_dirs and env.input_data_config."""
    input_config = input_config or {}
    preflight.check_input_data_config(input_config)
    configured = {name: _describe(name, path, input_config.get(name) or {}) for name, path in channel_dirs.items()}
    refuse_streams(configured)
    found = {}
    for name in REQUIRED:
        if name not in configured:
            raise DataError(
                f"The '{name}' channel is missing: expected class folders of images under "
                f"/opt/ml/input/data/{name} (got channels: {', '.join(sorted(channel_dirs)) or 'none'}). "
                f"Pass it as the '{name}' input of the training job."
            )
        folder(configured[name], name)
        found[name] = configured[name]
    for ours, aliases in OPTIONAL.items():
        given = [configured[alias] for alias in aliases if alias in configured]
        if given:
            folder(given[0], ours)
            found[ours] = given[0]
    return found


def log_unread(channel_dirs: dict[str, str], found: dict[str, Channel]) -> None:
    """A channel this image never reads (a typo such as 'eval', or 'validation' beside 'valid') is
    named once in the log: its data is copied but has no effect on the job."""
    used = {channel.name for channel in found.values()} | set(ELSEWHERE)
    unread = sorted(set(channel_dirs) - used)
    if unread:
        logger.warning("channel(s) %s are not read by this image, which reads train, valid (or validation), test "
                       "and pretrained", ", ".join(unread))
