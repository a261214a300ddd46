"""Reduced precision: the choice serving makes, and the agreement training records."""
import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from byoc import model_package, precision
from byoc.contract import ModelPackageError, ModelSpec, Preprocessing, load_spec
from byoc.serving.inference import Classifier

CPU = torch.device("cpu")


@pytest.fixture
def native(monkeypatch):
    def set_native(value: bool):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda: value)
    return set_native


def test_fp32_and_bf16_on_request(native):
    native(False)
    assert precision.choose("fp32", CPU, {"agreement": 1.0, "images": 10}, 0.995).dtype == torch.float32
    forced = precision.choose("bf16", CPU, {}, 0.995)
    assert forced.dtype == torch.bfloat16 and "not native" in forced.reason


def test_auto_takes_bf16_only_where_native_and_agreeing(native):
    measured = {"agreement": 0.998, "images": 5000}
    native(False)
    assert precision.choose("auto", CPU, measured, 0.995).dtype == torch.float32
    native(True)
    chosen = precision.choose("auto", CPU, measured, 0.995)
    assert chosen.dtype == torch.bfloat16 and "99.80% of 5000 images" in chosen.reason


def test_the_guard_refuses_a_model_below_the_bar_or_never_measured(native):
    native(True)
    below = precision.choose("auto", CPU, {"agreement": 0.99, "images": 300}, 0.995)
    assert below.dtype == torch.float32 and "below BYOC_PRECISION_MIN_AGREEMENT 99.50%" in below.reason
    unmeasured = precision.choose("auto", CPU, {}, 0.995)
    assert unmeasured.dtype == torch.float32 and "no measured bf16 agreement" in unmeasured.reason


def test_the_cpu_flags_decide_nativeness(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "CPU_FLAGS", cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n")
    assert not precision.cpu_has_bf16()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert precision.cpu_has_bf16()
    cpuinfo.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert precision.cpu_has_bf16()


def test_agreement_is_measured_against_the_fp32_model_on_labelled_data():
    torch.manual_seed(0)
    spec = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(28, 28))
    model = model_package.build(spec).eval()
    images, labels = torch.randn(64, 3, 28, 28), torch.randint(0, 10, (64,))
    found = precision.agreement(model, DataLoader(TensorDataset(images, labels), batch_size=16), CPU)
    with torch.inference_mode():
        fp32 = model(images).argmax(1)
    assert found["images"] == 64 and 0.9 <= found["agreement"] <= 1.0
    assert found["fp32_accuracy"] == pytest.approx((fp32 == labels).float().mean().item())
    assert next(model.parameters()).dtype == torch.float32  # the measured model is untouched


def test_bf16_that_stays_close_to_fp32_is_measured_as_agreeing():
    """A model whose classes are far apart (one dominant logit) agrees at 100 %: the measurement
    is of the model, not a constant."""
    torch.manual_seed(1)
    spec = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(28, 28))
    model = model_package.build(spec).eval()
    images = torch.randn(32, 3, 28, 28)
    with torch.inference_mode():
        final = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        final.weight.mul_(1000)  # margins far beyond bf16's rounding
        labels = model(images).argmax(1)
    found = precision.agreement(model, DataLoader(TensorDataset(images, labels), batch_size=8), CPU)
    assert found["agreement"] == 1.0 and found["fp32_accuracy"] == 1.0 and found["accuracy"] == 1.0


def _package(tmp_path, record: dict | None):
    torch.manual_seed(0)
    spec = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(28, 28), precision=record or {})
    model_package.save(model_package.build(spec).eval(), spec, tmp_path)
    return tmp_path


def test_model_json_records_the_measurement_and_older_packages_still_load(tmp_path):
    record = {"dtype": "bf16", "images": 300, "agreement": 0.9967, "fp32_accuracy": 0.81, "accuracy": 0.8067,
              "device": "cpu", "split": "valid"}
    assert load_spec(_package(tmp_path / "new", record)).precision == record
    older = json.loads((tmp_path / "new/model.json").read_text())
    del older["precision"]
    (tmp_path / "new/model.json").write_text(json.dumps(older))
    assert load_spec(tmp_path / "new").precision == {}


@pytest.mark.parametrize("record", [{"agreement": "high", "images": 3}, {"agreement": 1.5, "images": 3},
                                    {"images": 3}, {"agreement": 0.99}])
def test_a_precision_record_without_a_usable_agreement_is_refused(tmp_path, record):
    path = _package(tmp_path, None)
    document = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**document, "precision": record}))
    with pytest.raises(ModelPackageError, match="precision record"):
        load_spec(path)


def test_the_classifier_serves_in_the_chosen_precision(tmp_path, native):
    path = _package(tmp_path, {"agreement": 0.999, "images": 300})
    native(True)
    fast = Classifier.load(str(path), CPU, "auto", 0.995)
    assert fast.precision.dtype == torch.bfloat16 and fast.model.dtype == torch.bfloat16
    strict = Classifier.load(str(path), CPU, "auto", 0.9995)
    assert strict.precision.dtype == torch.float32 and "below" in strict.precision.reason
    reference = Classifier.load(str(path), CPU)
    assert reference.precision.dtype == torch.float32  # host-side callers get fp32 unless they ask
    batch = torch.randn(4, 3, 28, 28)
    full, half = reference.probabilities(batch), fast.probabilities(batch)
    assert half.dtype == torch.float32 and torch.allclose(full, half, atol=0.05)
