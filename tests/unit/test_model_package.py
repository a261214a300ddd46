import json
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

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


def _package(tmp_path, spec=SPEC) -> tuple:
    model_package.save(model_package.build(SPEC), spec, tmp_path)
    return tmp_path, load_file(tmp_path / "model.safetensors")


def _weights(change):
    return lambda d, w: save_file(change(dict(w)), d / "model.safetensors")


def _set(name, value):
    return lambda w: {**w, name: value(w[name])}


def _without(name):
    return lambda w: {k: v for k, v in w.items() if k != name}


# Weights that do not fit model.json, or that would answer garbage: refused naming the file and tensor.
BAD_WEIGHTS = {
    "another class count in model.json": (lambda d, w: (d / "model.json").write_text(
        ModelSpec("small_cnn", ["a", "b", "c"], Preprocessing(28, 28)).document()),
        r"tensor 9.bias has shape \[4\]; small_cnn with 3 classes \(model.json\) needs \[3\]"),
    "another architecture": (lambda d, w: (d / "model.json").write_text(
        ModelSpec("resnet_small", SPEC.class_names, Preprocessing(28, 28)).document()),
        "does not hold the weights of resnet_small"),
    "a tensor missing": (_weights(_without("9.weight")), r"1 tensors missing \(e.g. \['9.weight'\]\)"),
    "a tensor too many": (_weights(lambda w: {**w, "extra": torch.zeros(2)}), "1 unexpected"),
    "a wrong shape": (_weights(_set("0.0.weight", lambda t: torch.zeros(16, 3, 3, 3))), "0.0.weight has shape"),
    "integers for floats": (_weights(_set("9.weight", lambda t: t.to(torch.int32))), "9.weight is I32"),
    "NaN": (_weights(_set("9.weight", lambda t: torch.full_like(t, float("nan")))), "9.weight holds NaN"),
    "one infinity": (_weights(_set("9.bias", lambda t: t.index_fill(0, torch.tensor([1]), float("inf")))),
                     "9.bias holds NaN or infinite"),
    "zero bytes": (lambda d, w: (d / "model.safetensors").write_bytes(b""), "not a safetensors file"),
    "truncated": (lambda d, w: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]),
                  "not a safetensors file"),
    "an absurd header length": (lambda d, w: (d / "model.safetensors").write_bytes(
        (2**63).to_bytes(8, "little") + (d / "model.safetensors").read_bytes()[8:]), "not a safetensors file"),
    "a directory": (lambda d, w: ((d / "model.safetensors").unlink(), (d / "model.safetensors").mkdir()),
                    "model.safetensors is not a regular file"),
    "/dev/urandom": (lambda d, w: ((d / "model.safetensors").unlink(),
                                   (d / "model.safetensors").symlink_to("/dev/urandom")), "not a regular file"),
    "width that does not build": (lambda d, w: (d / "model.json").write_text(
        ModelSpec("small_cnn", SPEC.class_names, Preprocessing(28, 28), {"width": -1}).document()),
        "architecture_args {'width': -1} do not build small_cnn"),
    "an unknown argument": (lambda d, w: (d / "model.json").write_text(
        ModelSpec("small_cnn", SPEC.class_names, Preprocessing(28, 28), {"depth": 3}).document()),
        "unexpected keyword argument 'depth'"),
}


@pytest.mark.parametrize("spoil, says", BAD_WEIGHTS.values(), ids=BAD_WEIGHTS)
def test_weights_that_do_not_fit_are_refused_naming_the_tensor(tmp_path, spoil, says):
    directory, weights = _package(tmp_path)
    spoil(directory, weights)
    with pytest.raises(ModelPackageError, match=says):
        model_package.load(directory)


def test_a_model_too_big_to_build_is_named_by_check_and_refused_by_load(tmp_path):
    """check builds on the meta device, so it names the shape without allocating it; load, in a
    worker, builds for real (the meta build would cost each start ~0.8 s) and says it cannot."""
    directory, _ = _package(tmp_path)
    (directory / "model.json").write_text(
        ModelSpec("small_cnn", SPEC.class_names, Preprocessing(28, 28), {"width": 10**6}).document())
    with pytest.raises(ModelPackageError, match=r"needs \[1000000, 3, 3, 3\]"):
        model_package.check(directory)
    with pytest.raises(ModelPackageError, match="do not build small_cnn: .*allocate"):
        model_package.load(directory)


def test_the_package_check_prints_one_line_and_exits_1(tmp_path):
    directory, weights = _package(tmp_path)
    _weights(_set("9.weight", lambda t: torch.full_like(t, float("nan"))))(directory, weights)
    done = subprocess.run([sys.executable, "-m", "byoc.model_package", str(directory)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr == f"{directory / 'model.safetensors'}: tensor 9.weight holds NaN " \
                                                   "or infinite values\n", done.stderr


def test_weights_in_half_or_double_precision_and_no_step_counters_still_load(tmp_path):
    directory, weights = _package(tmp_path)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()
               if not k.endswith("num_batches_tracked")}, directory / "model.safetensors")
    model_package.load(directory)


def test_a_pickle_instead_of_safetensors_is_never_loaded_and_says_what_to_do(tmp_path):
    directory, _ = _package(tmp_path)
    (directory / "model.safetensors").unlink()
    planted = tmp_path / "unpickled"
    (directory / "model.pth").write_bytes(pickle.dumps(_Plant(str(planted))))
    with pytest.raises(ModelPackageError, match="model.pth is never loaded .*safetensors.torch.save_file"):
        model_package.load(directory)
    assert not planted.exists()


class _Plant:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
