import json

import pytest
import torch

from byoc import model_package
from byoc.contract import ModelPackageError, ModelSpec, Preprocessing

SPEC = ModelSpec("small_cnn", [f"class {i}" for i in range(4)], Preprocessing(28, 28))


def test_round_trip_gives_the_same_predictions(tmp_path):
    torch.manual_seed(0)
    model = model_package.build(SPEC).eval()
    model_package.save(model, SPEC, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]

    loaded, spec = model_package.load(tmp_path)
    x = torch.randn(2, 3, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert spec.class_names == SPEC.class_names and spec.architecture == "small_cnn"
    assert json.loads((tmp_path / "model.json").read_text())["preprocessing"]["crop_size"] == 28


def test_missing_spec_is_a_clear_error(tmp_path):
    with pytest.raises(ModelPackageError, match="model.json is missing"):
        model_package.load(tmp_path)


def test_other_format_versions_are_refused(tmp_path):
    model_package.save(model_package.build(SPEC), SPEC, tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**document, "format_version": 99}))
    with pytest.raises(ModelPackageError, match="format_version 99"):
        model_package.load(tmp_path)


def test_unknown_architecture_is_refused(tmp_path):
    spec = ModelSpec("resnet9000", ["a", "b"], Preprocessing(28, 28))
    with pytest.raises(ValueError, match="unknown architecture 'resnet9000'"):
        model_package.build(spec)
