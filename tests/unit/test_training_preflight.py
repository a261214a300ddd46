"""The image's `train` checks SageMaker's config files and settings before sagemaker-training reads
them: what the toolkit would trip on fails in one paragraph, exit code 1, not with a traceback."""
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from byoc.training import preflight
from byoc.training.errors import ConfigError

GOOD = {"hyperparameters.json": {"epochs": "1", "sagemaker_container_log_level": "20"},
        "inputdataconfig.json": {"train": {"TrainingInputMode": "File"}},
        "resourceconfig.json": {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}}


def lay_out(config_dir, **replaced) -> None:
    """The three files as SageMaker writes them; replaced[name]: that file's text, or None for no file."""
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, content in GOOD.items():
        text = replaced.get(name.replace(".json", ""), json.dumps(content))
        if text is not None:
            (config_dir / name).write_text(text)


def test_a_job_as_sagemaker_lays_it_out_passes(tmp_path):
    lay_out(tmp_path)
    preflight.check(tmp_path, environ={"SAGEMAKER_CONTAINER_LOG_LEVEL": "20"})


@pytest.mark.parametrize("replaced, reason", [
    ({"hyperparameters": None}, "hyperparameters.json is missing"),
    ({"inputdataconfig": None}, "inputdataconfig.json is missing"),
    ({"hyperparameters": ""}, "hyperparameters.json is not valid JSON"),
    ({"hyperparameters": '{"epochs": 1,'}, "hyperparameters.json is not valid JSON"),
    ({"hyperparameters": '["epochs", "1"]'}, "hyperparameters.json holds a JSON list, not an object"),
    ({"inputdataconfig": "{'train': {}}"}, "inputdataconfig.json is not valid JSON"),
    ({"inputdataconfig": '{"train": "File"}'}, "channel 'train' is \"File\", not an object of settings"),
    ({"resourceconfig": '{"current_host": "algo-1"}'}, "resourceconfig.json must list the job's hosts"),
    ({"resourceconfig": '{"current_host": "algo-1", "hosts": "algo-1"}'}, "it has \"hosts\": \"algo-1\""),
    ({"resourceconfig": '{"current_host": "algo-1", "hosts": []}'}, "it has \"hosts\": []"),
    ({"resourceconfig": '{"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}'}, "algo-1 more than once"),
    ({"resourceconfig": '{"current_host": "algo-3", "hosts": ["algo-1"]}'}, "current_host \"algo-3\", which is not"),
    ({"hyperparameters": '{"sagemaker_container_log_level": "verbose"}'},
     "sagemaker_container_log_level='verbose' is not valid: it must be a logging level number"),
    ({"hyperparameters": '{"sagemaker_job_name": "42"}'}, "sagemaker_job_name='42' is not valid: it must be text"),
])
def test_what_the_toolkit_would_trip_on_is_one_paragraph_naming_the_file(tmp_path, replaced, reason):
    lay_out(tmp_path, **replaced)
    with pytest.raises(ConfigError) as error:
        preflight.check(tmp_path, environ={})
    assert reason in str(error.value) and "\n" not in str(error.value)


def test_a_log_level_the_toolkit_cannot_read_is_refused(tmp_path):
    lay_out(tmp_path)
    with pytest.raises(ConfigError, match="SAGEMAKER_CONTAINER_LOG_LEVEL='debug' is not valid"):
        preflight.check(tmp_path, environ={"SAGEMAKER_CONTAINER_LOG_LEVEL": "debug"})


@pytest.mark.parametrize("value, threads", [(None, 0), ("", 0), ("4", 4), (" 2 ", 2), ("0", 0)])
def test_omp_num_threads_is_read_as_a_count(value, threads):
    assert preflight.omp_threads({} if value is None else {"OMP_NUM_THREADS": value}) == threads


def test_omp_num_threads_that_is_not_a_number_is_refused():
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS='two' is not valid: it must be a whole number"):
        preflight.omp_threads({"OMP_NUM_THREADS": "two"})


def test_train_writes_the_failure_and_exits_1_before_the_toolkit_runs(tmp_path, monkeypatch):
    lay_out(tmp_path / "input/config", hyperparameters='["epochs", "1"]')
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.setattr("sagemaker_training.trainer.train", lambda: pytest.fail("the toolkit ran"))
    with pytest.raises(SystemExit) as exit:
        preflight.main()
    assert exit.value.code == 1
    assert (tmp_path / "output/failure").read_text().endswith("hyperparameters.json holds a JSON list, not an "
                                                              "object ({...}).")


def test_train_hands_a_sound_job_to_the_toolkit(tmp_path, monkeypatch):
    lay_out(tmp_path / "input/config")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    ran = []
    monkeypatch.setattr("sagemaker_training.trainer.train", lambda: ran.append(True))
    preflight.main()
    assert ran == [True] and not (tmp_path / "output/failure").exists()


def test_a_user_id_without_a_name_gets_one_for_torchs_cache_folders(monkeypatch):
    """docker run --user 12345: getpass.getuser() (torch, on import) raises KeyError without a name."""
    import getpass

    monkeypatch.setattr("os.getuid", lambda: 4242424)  # no passwd entry
    environ = {}
    preflight.name_the_user(environ)
    assert environ == {"USER": "uid4242424"}
    monkeypatch.setattr("os.environ", environ)
    assert getpass.getuser() == "uid4242424"
    kept = {"LOGNAME": "trainer"}
    preflight.name_the_user(kept)
    assert kept == {"LOGNAME": "trainer"}


def test_a_known_user_keeps_its_passwd_name(monkeypatch):
    environ = {}
    preflight.name_the_user(environ)  # the test's own user has a passwd entry
    assert environ == {}


def as_a_user_other_than_root(check, *args) -> str:
    """check(*args) as this user, or, under root (which writes anywhere, so the refusal could not be
    reached), in a forked child as nobody (65534): its ConfigError's text, or "" if it passed."""
    if os.geteuid() != 0:
        try:
            check(*args)
        except ConfigError as error:
            return str(error)
        return ""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # modules loaded already: the checkout may sit in a 0700 folder
        os.close(read)
        try:
            os.setgid(65534), os.setuid(65534)
            check(*args)
            os.write(write, b"")
        except ConfigError as error:
            os.write(write, str(error).encode())
        except BaseException as error:  # anything else must fail the test, not pass as "no refusal"
            os.write(write, f"unexpected {error!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    return said


def test_an_opt_ml_this_user_cannot_write_is_refused_in_one_paragraph():
    parent = Path(tempfile.mkdtemp())  # not pytest's tmp_path: under root it is 0700, closed to nobody
    base = parent / "opt_ml"
    try:
        parent.chmod(0o755)
        base.mkdir()
        base.chmod(0o777)
        assert as_a_user_other_than_root(preflight.check_code_dir, base) == ""  # the toolkit creates code/
        base.chmod(0o555)
        said = as_a_user_other_than_root(preflight.check_code_dir, base)
        assert re.search(r"cannot create .*/code: sagemaker-training creates that folder", said), said
        assert "\n" not in said
        base.chmod(0o755), (base / "code").mkdir(), base.chmod(0o555)
        assert as_a_user_other_than_root(preflight.check_code_dir, base) == ""  # there already, as in the image
    finally:
        base.chmod(0o755)
        shutil.rmtree(parent)


@pytest.mark.parametrize("name, written, expected", [
    ("checkpointconfig.json", None, "/opt/ml/checkpoints"),  # no CheckpointConfig
    ("checkpointconfig.json", {"S3Uri": "s3://bucket/ckpt"}, "/opt/ml/checkpoints"),  # LocalPath left out
    ("checkpointconfig.json", {"LocalPath": "/opt/ml/checkpoints/", "S3Uri": "s3://b/c"}, "/opt/ml/checkpoints"),
    ("checkpointconfig.json", {"LocalPath": "/checkpoints/run-7", "S3Uri": "s3://b/c"}, "/checkpoints/run-7"),
    ("tensorboardoutputconfig.json", {"LocalPath": "/opt/ml/output/tb", "S3OutputPath": "s3://b/tb"},
     "/opt/ml/output/tb"),
])
def test_the_folder_sagemaker_syncs_is_the_jobs_local_path(tmp_path, name, written, expected):
    lay_out(tmp_path)
    if written is not None:
        (tmp_path / name).write_text(json.dumps(written))
    default = "/opt/ml/checkpoints" if name.startswith("checkpoint") else "/opt/ml/output/tensorboard"
    assert str(preflight.local_path(tmp_path, name, default)) == expected
    preflight.check(tmp_path, environ={})


def test_a_local_path_that_is_no_absolute_folder_is_refused_before_the_toolkit(tmp_path):
    lay_out(tmp_path)
    (tmp_path / "checkpointconfig.json").write_text('{"LocalPath": "checkpoints", "S3Uri": "s3://b/c"}')
    with pytest.raises(ConfigError, match=r"checkpointconfig.json: LocalPath must be an absolute folder path"):
        preflight.check(tmp_path, environ={})


@pytest.mark.parametrize("location, environ, intermediate, reason", [
    ('"s3://bucket/out"', {}, False, "no region is known for its S3 client"),
    ('"/tmp/out"', {"AWS_REGION": "us-west-2"}, False, r"it must be an s3:// URI \(or file://\)"),
    ('"s3://bucket/out"', {"AWS_REGION": "us-west-2"}, False, None),  # SageMaker: the region is set
    ('"s3://bucket/out"', {"AWS_DEFAULT_REGION": "eu-west-1"}, False, None),
    ('"file:///tmp/out"', {}, False, None),  # local output: the toolkit syncs nothing
    ('"s3://bucket/out"', {}, True, None),  # the folder exists: SageMaker syncs it, the toolkit does not
])
def test_sagemaker_s3_output_is_checked_as_the_toolkit_uses_it(tmp_path, location, environ, intermediate, reason):
    """RLEstimator sends sagemaker_s3_output; sagemaker-training then makes an S3 client for
    /opt/ml/output/intermediate, and without a region it dies with 'Invalid endpoint: https://s3..amazonaws.com'."""
    config = tmp_path / "input" / "config"
    lay_out(config, hyperparameters=json.dumps({"epochs": "1", "sagemaker_s3_output": location}))
    if intermediate:
        (tmp_path / "output" / "intermediate").mkdir(parents=True)
    if reason is None:
        preflight.check(config, environ=environ)
    else:
        with pytest.raises(ConfigError, match=reason):
            preflight.check(config, environ=environ)
