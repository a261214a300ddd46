"""The training image's `train`: SageMaker's config files checked, then sagemaker-training's own `train`.

sagemaker-training reads every file under /opt/ml/input/config, and its log level, into its
Environment before it imports byoc.training.main. What it trips on there (a file missing or not
JSON, `hosts` not a list, a log level it cannot read) would end the job with a traceback in
/opt/ml/output/failure and exit code 1 or 2. check() reads the same files and settings first, so
such a job fails like any other bad input: one paragraph, exit code 1, before anything else runs.
The checks of a parsed file are also what channels.py and distributed.py call on theirs.

No torch here: this runs before every job, on every host.
"""
import json
import logging
import os
import pwd
from pathlib import Path
from urllib.parse import urlparse

from byoc.training.errors import ConfigError

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"  # sagemaker-training's: /opt/ml unless set
LOG_LEVEL_ENV = "SAGEMAKER_CONTAINER_LOG_LEVEL"  # read with int()
LOG_LEVEL_KEY = "sagemaker_container_log_level"  # handed to logging as the JSON-decoded value
TEXT_KEYS = ("sagemaker_job_name", "sagemaker_region")  # the toolkit puts these into os.environ
S3_OUTPUT_KEY = "sagemaker_s3_output"  # the toolkit syncs output/intermediate there (SDK v2's RLEstimator sends it)
CONFIG_FILES = ("hyperparameters.json", "inputdataconfig.json", "resourceconfig.json")
# What SageMaker also writes there when the job has a CheckpointConfig or TensorBoardOutputConfig:
# {"LocalPath": ..., "S3Uri"/"S3OutputPath": ...}. LocalPath is the folder it syncs with S3; a job may
# name its own (the SDKs' checkpoint_local_path=, TensorBoardOutputConfig(container_local_output_path=)).
CHECKPOINT_CONFIG = "checkpointconfig.json"
TENSORBOARD_CONFIG = "tensorboardoutputconfig.json"

logger = logging.getLogger("byoc.training")


def read_object(path: Path) -> dict:
    """A config file's JSON object, or a ConfigError naming the file and what is wrong with it."""
    if not path.is_file():
        raise ConfigError(f"{path} is missing: SageMaker writes it for every training job; to run the image "
                          "yourself, lay out /opt/ml as a training job has it (see the README).")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError; also an empty file
        raise ConfigError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path} holds a JSON {type(content).__name__}, not an object ({{...}}).")
    return content


def decoded(value):
    """A hyperparameter as sagemaker-training hands it on: JSON-decoded where it decodes."""
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


def check_hyperparameters(raw: dict) -> None:
    """SageMaker's own keys, which the toolkit uses before our code sees them (hyperparameters.py
    checks ours)."""
    level = decoded(raw.get(LOG_LEVEL_KEY, logging.INFO))
    if isinstance(level, bool) or not isinstance(level, int):
        raise ConfigError(f"Hyperparameter {LOG_LEVEL_KEY}={raw[LOG_LEVEL_KEY]!r} is not valid: it must be a "
                          "logging level number (10 debug, 20 info, 30 warning, 40 error).")
    for key in TEXT_KEYS:
        if key in raw and not isinstance(decoded(raw[key]), str):
            raise ConfigError(f"Hyperparameter {key}={raw[key]!r} is not valid: it must be text.")


def check_s3_output(raw: dict, environ, base: Path) -> None:
    """sagemaker-training uploads output/intermediate to sagemaker_s3_output while the job runs,
    unless that folder exists (then SageMaker syncs it itself). Its S3 client needs an s3:// URI (or
    file://, which it skips) and a region, read as the toolkit reads it."""
    location = decoded(raw.get(S3_OUTPUT_KEY))
    if not location or (base / "output" / "intermediate").exists():
        return
    scheme = urlparse(str(location)).scheme
    if scheme == "file":
        return
    if scheme != "s3":
        raise ConfigError(f"Hyperparameter {S3_OUTPUT_KEY}={raw[S3_OUTPUT_KEY]!r} is not valid: sagemaker-training "
                          "uploads /opt/ml/output/intermediate there, so it must be an s3:// URI (or file://).")
    region = environ.get("AWS_REGION") or decoded(raw.get("sagemaker_region")) or environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError(f"Hyperparameter {S3_OUTPUT_KEY}={raw[S3_OUTPUT_KEY]!r} asks sagemaker-training to upload "
                          "/opt/ml/output/intermediate to S3, but no region is known for its S3 client: set the "
                          "environment variable AWS_REGION (SageMaker sets it) or the hyperparameter "
                          "sagemaker_region.")


def check_log_level_env(environ) -> None:
    value = environ.get(LOG_LEVEL_ENV)
    try:
        int(value if value is not None else logging.INFO)
    except ValueError:
        raise ConfigError(f"Environment variable {LOG_LEVEL_ENV}={value!r} is not valid: it must be a logging "
                          "level number (10 debug, 20 info, 30 warning, 40 error).") from None


def check_input_data_config(config, where: str = "inputdataconfig.json") -> None:
    """{channel: {"TrainingInputMode": ..., ...}}: every channel's settings an object."""
    if not isinstance(config, dict):
        raise ConfigError(f"{where} must be a JSON object of channels ({{\"train\": {{\"TrainingInputMode\": "
                          f"\"File\"}}, ...}}), not a {type(config).__name__}.")
    for name, settings in config.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: channel '{name}' is {json.dumps(settings)[:80]}, not an object of "
                              "settings like {\"TrainingInputMode\": \"File\", \"S3DistributionType\": "
                              "\"FullyReplicated\"}.")


def check_resource_config(config, where: str = "resourceconfig.json") -> None:
    """`hosts`: distinct host names, `current_host` one of them; each host is one node of the job."""
    hosts, current = config.get("hosts"), config.get("current_host")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f"{where} must list the job's hosts as a non-empty JSON list of names, e.g. "
                          f"\"hosts\": [\"algo-1\", \"algo-2\"]; it has \"hosts\": {json.dumps(hosts)[:120]}.")
    repeated = sorted({h for h in hosts if hosts.count(h) > 1})
    if repeated:
        raise ConfigError(f"{where} lists host(s) {', '.join(repeated)} more than once in \"hosts\": "
                          f"{json.dumps(hosts)[:120]}; every host must be named once (each is one node of "
                          "the job, and a repeated one would be waited for forever).")
    if not isinstance(current, str) or current not in hosts:
        raise ConfigError(f"{where} names current_host {json.dumps(current)[:60]}, which is not among its "
                          f"hosts {json.dumps(hosts)[:120]}.")
    interface = config.get("network_interface_name")
    if interface is not None and not isinstance(interface, str):
        raise ConfigError(f"{where}: network_interface_name must be text, e.g. \"eth0\"; it is "
                          f"{json.dumps(interface)[:60]}.")


def local_path(config_dir: Path, name: str, default: Path) -> Path:
    """The LocalPath of CHECKPOINT_CONFIG or TENSORBOARD_CONFIG, or `default` (no such file, or no
    LocalPath in it): writing anywhere else, the job's checkpoints or scalars would never reach S3."""
    path = Path(config_dir) / name
    if not path.is_file():
        return Path(default)
    local = read_object(path).get("LocalPath")
    if local is None:
        return Path(default)
    if not isinstance(local, str) or not local.startswith("/"):
        raise ConfigError(f"{path}: LocalPath must be an absolute folder path, e.g. \"{default}\"; it is "
                          f"{json.dumps(local)[:80]}.")
    return Path(local)


def check(config_dir: Path, environ=os.environ) -> None:
    """Everything sagemaker-training reads before our code runs; a ConfigError for the first fault."""
    hyperparameters, input_data, resources = (read_object(config_dir / name) for name in CONFIG_FILES)
    check_hyperparameters(hyperparameters)
    check_s3_output(hyperparameters, environ, Path(config_dir).parent.parent)
    check_input_data_config(input_data, str(config_dir / "inputdataconfig.json"))
    check_resource_config(resources, str(config_dir / "resourceconfig.json"))
    check_log_level_env(environ)
    for name in (CHECKPOINT_CONFIG, TENSORBOARD_CONFIG):
        local_path(config_dir, name, Path("/opt/ml"))


def omp_threads(environ=os.environ) -> int:
    """OMP_NUM_THREADS as a count (0: unset), or a ConfigError: torch would read it as a number."""
    value = (environ.get("OMP_NUM_THREADS") or "").strip()
    if value and not value.isdigit():
        raise ConfigError(f"Environment variable OMP_NUM_THREADS={value!r} is not valid: it must be a whole "
                          "number (the compute threads per process; 0 or unset: one per core).")
    return int(value or 0)


def name_the_user(environ=os.environ) -> None:
    """A user id without a passwd entry (`docker run --user 12345`, Kubernetes' runAsUser) has no
    name, and getpass.getuser(), which torch calls on import for its cache folders, then raises
    KeyError: give it one in USER, getuser's second choice (LOGNAME, if set, still wins)."""
    if any(environ.get(name) for name in ("LOGNAME", "USER", "LNAME", "USERNAME")):
        return
    try:
        pwd.getpwuid(os.getuid())
    except KeyError:
        environ["USER"] = f"uid{os.getuid()}"


def check_code_dir(base: Path) -> None:
    """sagemaker-training creates {base}/code when it is imported; the image holds /opt/ml/code
    already, so only an /opt/ml this user cannot write, mounted over the image's, is left."""
    code = base / "code"
    if code.is_dir() or os.access(base, os.W_OK | os.X_OK):
        return
    raise ConfigError(f"This container runs as user id {os.getuid()}, which cannot create {code}: "
                      f"sagemaker-training creates that folder as it starts. {base} is mounted over the image's "
                      f"own (which has {code}) and is not writable by this user; create {code} in the mounted "
                      "folder, make the folder writable by this user, or run the container as root, as "
                      "SageMaker does.")


def fail(reason: str, output_dir: Path) -> None:
    """Report as sagemaker-training does: the paragraph in output/failure, exit code 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.error("Reporting training FAILURE: %s", reason)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(reason)
    except OSError as error:
        logger.error("could not write %s/failure: %s", output_dir, error)
    raise SystemExit(1)


def main() -> None:
    base = Path(os.environ.get(BASE_DIR_ENV, "/opt/ml"))
    name_the_user()
    try:
        check(base / "input" / "config")
        omp_threads()
        check_code_dir(base)
    except ConfigError as error:
        fail(str(error), base / "output")
    from sagemaker_training import trainer  # its Environment() reads the files checked above

    trainer.train()


if __name__ == "__main__":
    main()
