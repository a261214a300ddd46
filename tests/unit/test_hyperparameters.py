import json
from dataclasses import asdict
import os
import subprocess
import sys
from pathlib import Path

import pytest

from byoc.training.errors import HyperparameterError
from byoc.training.hyperparameters import FIELDS, Hyperparameters, markdown_table, parse


def test_defaults_when_nothing_is_given():
    assert parse({}) == Hyperparameters()


def test_decoded_values_are_typed():
    hp = parse({"model": "small_cnn", "epochs": 4, "lr": 1, "batch_size": 32.0})
    assert (hp.epochs, hp.lr, hp.batch_size) == (4, 1.0, 32)
    assert isinstance(hp.lr, float) and isinstance(hp.batch_size, int)


@pytest.mark.parametrize(
    "raw, named, allowed",
    [
        ({"epochs": 0}, "epochs=0", "[1, 2147483647]"),
        ({"lr": 0}, "lr=0", "(0, 100]"),
        ({"lr": -0.1}, "lr=-0.1", "(0, 100]"),
        ({"batch_size": 0}, "batch_size=0", "[1, 2147483647]"),
        ({"epochs": "three"}, "epochs='three'", "an integer"),
        ({"epochs": 2.5}, "epochs=2.5", "an integer"),
        ({"epochs": True}, "epochs=True", "an integer"),
        ({"lr": [0.1]}, "lr=[0.1]", "a number"),
        ({"model": "resnet9000"}, "model='resnet9000'", "small_cnn"),
        ({"momentum": 1.0}, "momentum=1.0", "[0, 1)"),
    ],
)
def test_bad_values_name_the_parameter_and_what_is_allowed(raw, named, allowed):
    with pytest.raises(HyperparameterError) as error:
        parse(raw)
    assert named in str(error.value) and allowed in str(error.value)


@pytest.mark.parametrize(
    "raw, named, allowed",
    [
        ({"lr": "1" + "0" * 400}, "lr='1000", "(0, 100]"),
        ({"lr": 10**400}, "lr=1000", "(0, 100]"),
        ({"epochs": 10**400}, "epochs=1000", "[1, 2147483647]"),
        ({"lr": "1e308"}, "lr='1e308'", "(0, 100]"),
        ({"lr": "1e400"}, "lr='1e400'", "(0, 100]"),
        ({"warmup_epochs": "1e308"}, "warmup_epochs='1e308'", "[0, 2147483647]"),
        ({"seed": str(2**64)}, f"seed='{2**64}'", "[0, 9223372036854775807]"),
        ({"distributed_timeout": "1e30"}, "distributed_timeout='1e30'", "[5, 2147483647]"),
        ({"weight_decay": "1e300"}, "weight_decay=", "[0, 10]"),
        ({"progress_seconds": 10**30}, "progress_seconds=1000000000000000000000000000000", "[0, 2147483647]"),
    ],
)
def test_huge_numbers_are_refused_by_name_not_by_an_overflow(raw, named, allowed):
    with pytest.raises(HyperparameterError) as error:
        parse(raw)
    assert named in str(error.value) and allowed in str(error.value)
    assert len(str(error.value)) < 200  # a 400-digit value is cut short in the one paragraph


def test_the_largest_allowed_values_parse():
    hp = parse({"seed": 2**63 - 1, "lr": 100, "distributed_timeout": 2**31 - 1, "epochs": str(2**31 - 1)})
    assert (hp.seed, hp.lr, hp.distributed_timeout, hp.epochs) == (2**63 - 1, 100.0, 2**31 - 1, 2**31 - 1)


ODD_VALUES = [10**400, -(10**400), "1" * 5000, "1e999", "-1e999", "nan", "inf", 1e308, -1e308, 2**64, "0x10",
              "", " ", [], {}, [1], {"a": 1}, True, "True", 1.5, "1.5", -1, "\n", "é"]


@pytest.mark.parametrize("name", list(FIELDS))
def test_parse_raises_nothing_but_a_hyperparameter_error(name):
    for value in ODD_VALUES:
        try:
            parse({name: value})
        except HyperparameterError as error:
            assert name in str(error) and len(str(error)) < 600
        # any other exception fails the test: the job would report "an unexpected OverflowError"


def test_unknown_keys_are_listed_with_the_allowed_ones():
    with pytest.raises(HyperparameterError, match=r"Unknown hyperparameter\(s\) learning_rate\. Allowed: model, epochs"):
        parse({"learning_rate": 0.1})


def test_resize_smaller_than_crop_is_refused():
    with pytest.raises(HyperparameterError, match="resize_size=16 is smaller than image_size=28"):
        parse({"resize_size": 16, "image_size": 28})


def test_messages_are_one_paragraph():
    with pytest.raises(HyperparameterError) as error:
        parse({"epochs": "a\nb"})
    assert "\n" not in str(error.value)


def toolkit_decoded(sent: dict) -> dict:
    """What sagemaker-training hands the job for hyperparameters.json = `sent`: each value JSON-decoded
    where it is JSON, else the string itself (sagemaker_training.environment.read_hyperparameters)."""
    decoded = {}
    for name, value in sent.items():
        try:
            decoded[name] = json.loads(value)
        except ValueError:
            decoded[name] = value
    return decoded


def test_sdk_v2_str_values_are_read():
    """SDK v2's generic Estimator sends str() of each Python value."""
    python_values = {"hflip": False, "amp": True, "lr": 1e-05, "epochs": 3, "pretrained_weights": None,
                     "model": "resnet50", "rotation": 7.5, "crop_padding": -1}
    hp = parse(toolkit_decoded({k: str(v) for k, v in python_values.items()}))
    assert (hp.hflip, hp.amp, hp.lr, hp.epochs, hp.pretrained_weights, hp.model, hp.rotation, hp.crop_padding) == (
        False, True, 1e-05, 3, "", "resnet50", 7.5, -1)
    assert isinstance(hp.epochs, int) and isinstance(hp.lr, float)


def test_json_encoded_and_plain_values_are_read_alike():
    values = {"hflip": False, "lr": 0.1, "epochs": 2, "model": "small_cnn"}
    assert parse(toolkit_decoded({k: json.dumps(v) for k, v in values.items()})) == parse(values)


@pytest.mark.parametrize("spelling, value", [("true", True), ("TRUE", True), ("True", True), ("false", False),
                                             ("False", False), (" FALSE ", False), ("1", True), ("0", False),
                                             (1, True), (0, False)])
def test_booleans_in_any_case(spelling, value):
    assert parse({"hflip": spelling}).hflip is value


@pytest.mark.parametrize("raw, named", [
    ({"hflip": "yes"}, "hflip='yes'"), ({"hflip": 2}, "hflip=2"), ({"hflip": 0.5}, "hflip=0.5"),
    ({"lr": "nan"}, "lr='nan'"),
    ({"lr": float("inf")}, "lr=inf"), ({"epochs": "3.5"}, "epochs='3.5'"), ({"model": True}, "model=True"),
])
def test_what_no_client_means_is_refused(raw, named):
    with pytest.raises(HyperparameterError) as error:
        parse(raw)
    assert named in str(error.value)


def test_a_bad_boolean_lists_the_accepted_spellings():
    with pytest.raises(HyperparameterError, match=r"true or false \(any case: true, True, TRUE"):
        parse({"amp": "on"})


def test_sagemakers_own_keys_are_not_ours_to_refuse():
    hp = parse({"_tuning_objective_metric": "validation:accuracy", "sagemaker_program": "x", "epochs": 2})
    assert hp == Hyperparameters(epochs=2)


def test_the_readme_table_is_this_modules_table():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("<!-- hyperparameters: begin -->\n", 1)[1].split("<!-- hyperparameters: end -->", 1)[0]
    assert table == markdown_table(), "README.md: paste `python -m byoc.training.hyperparameters` between the markers"
    for name, f in FIELDS.items():  # and the table itself names each field with its default
        assert f"| `{name}` | " in table


def test_checking_hyperparameters_needs_no_torch(tmp_path):
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
                       "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
                       "            raise ImportError('torch is blocked in this test')\n"
                       "sys.meta_path.insert(0, Block())\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "from byoc.training.hyperparameters import parse; "
                           "print(parse({'epochs': '4', 'model': 'wrn28_10'}).epochs)"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "4", done.stderr
    blocked = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert "torch is blocked" in blocked.stderr  # the blocker works


@pytest.mark.parametrize("sent, field, value", [
    # a tuning job passes the chosen categorical value as the string the user listed
    ("True", "hflip", True), ("False", "amp", False),  # SDK v2 CategoricalParameter([True, False]): str()
    ("true", "hflip", True), ("FALSE", "hflip", False),  # JSON-encoded (SDK v3, boto3) or as typed
    ('"false"', "hflip", False),  # a JSON-encoded string of the word
    ("1", "deterministic", True), ("0", "hflip", False), ("1.0", "tensorboard", True),  # a 0-1 range or 0/1 choice
    ("adamw", "optimizer", "adamw"), ('"adamw"', "optimizer", "adamw"),
    ("64", "batch_size", 64), ("0.0125", "lr", 0.0125), ("1.0E-4", "weight_decay", 1e-4),  # Integer/Continuous
    ("force", "resume", "force"),
])
def test_tuning_jobs_values_are_read(sent, field, value):
    """What SageMaker's HPO writes into hyperparameters.json, through sagemaker-training's decoding."""
    hp = parse(toolkit_decoded({field: sent, "_tuning_objective_metric": "validation:accuracy"}))
    assert getattr(hp, field) == value and type(getattr(hp, field)) is type(value)


def test_resume_takes_auto_or_force():
    assert parse({}).resume == "auto"
    with pytest.raises(HyperparameterError, match="resume='never' is not valid: it must be auto or force"):
        parse({"resume": "never"})


def test_only_operational_fields_may_change_on_resume():
    from byoc.training.hyperparameters import DEFINING, differences
    operational = {"workers", "cache_mb", "max_bad_image_fraction", "checkpoint_every", "distributed_timeout",
                   "channels_last", "compile", "deterministic", "resume", "progress_seconds", "tensorboard"}
    assert set(FIELDS) - set(DEFINING) == operational
    saved = asdict(Hyperparameters())
    assert differences(saved, parse({"workers": 7, "tensorboard": True})) == {}
    assert differences(saved, parse({"seed": 3, "amp": False})) == {"amp": (True, False), "seed": (0, 3)}


def test_the_new_fields_are_checked():
    assert parse({"progress_seconds": "0", "tensorboard": "True"}) == Hyperparameters(progress_seconds=0,
                                                                                       tensorboard=True)
    with pytest.raises(HyperparameterError, match="progress_seconds=-1"):
        parse({"progress_seconds": -1})


@pytest.mark.parametrize("file_name", ["1e5", "1.50", "007", "true", "NaN", "-0", "[1]", "{}"])
def test_a_file_name_keeps_the_text_sagemaker_wrote(tmp_path, monkeypatch, file_name):
    """sagemaker-training JSON-decodes every value: a file named 1e5 would be looked for as 100000.0."""
    from sagemaker_training import environment

    from byoc.training import main

    path = tmp_path / "hyperparameters.json"
    monkeypatch.setattr(environment, "hyperparameters_file_dir", str(path))
    for sent in (file_name, json.dumps(file_name)):  # as boto3 and SDK v2 send it; JSON-encoded, as SDK v3 does
        path.write_text(json.dumps({"model": "resnet50", "pretrained_weights": sent}))
        hp = parse(environment.read_hyperparameters(), main.written_hyperparameters())
        assert hp.pretrained_weights == file_name
