"""byoc.contract: what the images and the host tools agree on, checked against each side."""
import json
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
