"""byoc.contract: what the images and the host tools agree on, checked against each side."""
import json
import os
import subprocess
import sys

import pytest
from sagemaker_training import environment

from byoc import contract, fashion_mnist, models
from byoc.contract import ModelPackageError, ModelSpec, Preprocessing


def test_class_folders_and_labels():
    assert contract.class_folder(0, "T-shirt_top") == "001.T-shirt_top"
    assert contract.class_folder(132, "Yorkshire_terrier") == "133.Yorkshire_terrier"
    assert contract.display_name("001.T-shirt_top") == "T-shirt top"
    assert contract.display_name("Golden_retriever") == "Golden retriever"  # any folder name works
    assert fashion_mnist.class_folder(2) == "003.Pullover"


def test_the_hyperparameter_encoding_is_what_the_training_toolkit_decodes(tmp_path, monkeypatch):
    values = {"epochs": 3, "lr": 1e-05, "model": "small_cnn", "hflip": False, "pretrained_weights": "",
              "rotation": 12.5}
    encoded = contract.encode_hyperparameters(values)
    assert all(isinstance(v, str) for v in encoded.values()) and encoded["model"] == '"small_cnn"'
    path = tmp_path / "hyperparameters.json"
    path.write_text(json.dumps(encoded))
    monkeypatch.setattr(environment, "hyperparameters_file_dir", str(path))
    assert environment.read_hyperparameters() == values  # sagemaker-training's own reader


def test_the_encoding_from_the_command_line():
    done = subprocess.run([sys.executable, "-m", "byoc.contract", "hyperparameters", '{"epochs": 2, "amp": true}'],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {"epochs": "2", "amp": "true"}


def test_the_model_registry_builds_exactly_the_contracts_architectures():
    assert tuple(models.ARCHITECTURES) == contract.ARCHITECTURES


def test_a_model_json_with_an_unknown_architecture_is_refused_before_any_model_is_built(tmp_path):
    spec = ModelSpec("resnet9000", ["a", "b"], Preprocessing(28, 28))
    (tmp_path / contract.SPEC_FILE).write_text(spec.document())
    with pytest.raises(ModelPackageError, match="resnet9000.*small_cnn"):
        contract.load_spec(tmp_path)


@pytest.mark.parametrize("text, says", [("[1, 2]", "format_version None"), ("{bad", "not valid JSON"),
                                        ('{"format_version": 1}', "lacks a field")])
def test_a_malformed_model_json_is_a_clear_error(tmp_path, text, says):
    (tmp_path / contract.SPEC_FILE).write_text(text)
    with pytest.raises(ModelPackageError, match=says):
        contract.load_spec(tmp_path)


def test_the_contract_needs_nothing_but_the_standard_library():
    """The Lambda zip carries it alone; the host tools import it without torch."""
    imports = subprocess.run([sys.executable, "-c", "import sys, byoc.contract; "
                              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                              "('torch', 'numpy', 'PIL', 'boto3')))"], capture_output=True, text=True, check=True)
    assert imports.stdout.strip() == "[]"


GOOD = json.loads(ModelSpec("small_cnn", ["a", "b"], Preprocessing(32, 28)).document())


def _with(path: str, value) -> dict:
    """GOOD with one field ('preprocessing.std') set, or removed (value ...)."""
    document = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    target = document
    for name in parents:
        target = target[name]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return document


# model.json as users and tools get it wrong: each refused with the field and what is wrong.
BAD_SPECS = {
    "format_version true": (_with("format_version", True), "format_version True"),
    "format_version 1.0": (_with("format_version", 1.0), "format_version 1.0"),
    "class_names a string": (_with("class_names", "ab"), "class_names must be a list"),
    "class_names numbers": (_with("class_names", [0, 1]), "class_names must be a list"),
    "class_names nulls": (_with("class_names", [None, None]), "class_names must be a list"),
    "class_names empty": (_with("class_names", []), "class_names must be a list"),
    "class_names an empty name": (_with("class_names", ["a", ""]), "class_names must be a list"),
    "class_names a megabyte name": (_with("class_names", ["a", "x" * 2**20]), "1-255 character"),
    "class_names repeated": (_with("class_names", ["a", "a"]), "repeats \\['a'\\]"),
    "architecture missing": (_with("architecture", ...), "missing architecture"),
    "an unknown key": (_with("class_name", ["a"]), "unknown class_name"),
    "architecture_args a list": (_with("architecture_args", [1]), "architecture_args, precision and int8"),
    "int8 a list": (_with("int8", [1]), "architecture_args, precision and int8"),
    "preprocessing extra key": (_with("preprocessing.interpolation", "bicubic"), "preprocessing must be"),
    "crop_size 0": (_with("preprocessing.crop_size", 0), "crop_size must be"),
    "crop_size 100000": (_with("preprocessing.crop_size", 100000), "crop_size must be"),
    "crop_size true": (_with("preprocessing.crop_size", True), "crop_size must be"),
    "resize_size a string": (_with("preprocessing.resize_size", "32"), "resize_size must be"),
    "resize_size negative": (_with("preprocessing.resize_size", -32), "resize_size must be"),
    "resize_size below the crop": (_with("preprocessing.resize_size", 16), "at least crop_size"),
    "mean of two": (_with("preprocessing.mean", [0.5, 0.5]), "mean must be three finite numbers"),
    "mean a string": (_with("preprocessing.mean", "abc"), "mean must be three"),
    "mean beyond a float": (_with("preprocessing.mean", [10**400, 0, 0]), "mean must be three"),
    "std zero": (_with("preprocessing.std", [0, 0, 0]), "each above 0"),
    "std negative": (_with("preprocessing.std", [-1, 1, 1]), "each above 0"),
}


@pytest.mark.parametrize("document, says", BAD_SPECS.values(), ids=BAD_SPECS)
def test_a_wrong_field_in_model_json_is_named(tmp_path, document, says):
    (tmp_path / contract.SPEC_FILE).write_text(json.dumps(document))
    with pytest.raises(ModelPackageError, match=says):
        contract.load_spec(tmp_path)


BAD_TEXTS = {
    "NaN": (json.dumps(GOOD).replace("0.229", "NaN").encode(), "NaN is not a JSON number"),
    "Infinity": (json.dumps(GOOD).replace("0.229", "Infinity").encode(), "Infinity is not a JSON number"),
    "a duplicate key": (json.dumps(GOOD)[:-1].encode() + b', "architecture": "resnet50"}', "appears twice"),
    "Latin-1": (json.dumps(_with("class_names", ["caf\u00e9", "b"]), ensure_ascii=False).encode("latin-1"),
                "not UTF-8"),
    "a 5,000-digit number": (json.dumps(GOOD)[:-1].encode() + b', "n": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    "100,000 nested lists": (b'{"format_version": 1, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
                             "not valid JSON"),
}


@pytest.mark.parametrize("text, says", BAD_TEXTS.values(), ids=BAD_TEXTS)
def test_model_json_that_is_not_strict_json_is_refused(tmp_path, text, says):
    (tmp_path / contract.SPEC_FILE).write_bytes(text)
    with pytest.raises(ModelPackageError, match=says):
        contract.load_spec(tmp_path)


def test_a_byte_order_mark_is_ignored(tmp_path):
    (tmp_path / contract.SPEC_FILE).write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert contract.load_spec(tmp_path).class_names == ["a", "b"]


@pytest.mark.parametrize("make", ["fifo", "dev_zero", "directory"])
def test_a_model_json_that_is_no_regular_file_is_refused_without_reading_it(tmp_path, make):
    """A FIFO would block forever, /dev/zero never end."""
    path = tmp_path / contract.SPEC_FILE
    {"fifo": os.mkfifo, "dev_zero": lambda p: p.symlink_to("/dev/zero"), "directory": os.mkdir}[make](path)
    with pytest.raises(ModelPackageError, match="model.json is not a regular file"):
        contract.load_spec(tmp_path)


def test_a_package_one_folder_too_deep_says_how_to_pack_it(tmp_path):
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / contract.SPEC_FILE).write_text(json.dumps(GOOD))
    with pytest.raises(ModelPackageError, match=r"outdir/model.json: the package is one folder too deep.*-C outdir"):
        contract.load_spec(tmp_path)


@pytest.mark.parametrize("files", [("model.pth", "code/inference.py"), ("model.pt",), ("dogs.mar",),
                                   ("inference.py", "model.bin")])
def test_a_package_for_another_serving_stack_is_named_as_such(tmp_path, files):
    """A model.tar.gz made for AWS's PyTorch containers (model_fn in code/inference.py) or TorchServe."""
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ModelPackageError, match=r"a package for another serving stack .* never runs code") as error:
        contract.load_spec(tmp_path)
    assert all(name in str(error.value) for name in files)


def test_an_empty_model_folder_gets_no_hint_about_other_stacks(tmp_path):
    with pytest.raises(ModelPackageError) as error:
        contract.load_spec(tmp_path)
    assert "another serving stack" not in str(error.value)
