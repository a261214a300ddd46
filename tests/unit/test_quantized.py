"""int8: calibrated once, recorded as plain numbers in model.json, rebuilt exactly where it serves;
chosen by the same guard as bf16."""
import json

import pytest
import torch
from torch.ao.quantization.observer import HistogramObserver
from torch.ao.quantization.quantize_fx import convert_fx
from torch.utils.data import DataLoader, TensorDataset

from byoc import model_package, precision, quantized
from byoc.contract import ModelPackageError, ModelSpec, Preprocessing, load_spec
from byoc.serving.inference import Classifier

CPU = torch.device("cpu")


def _model(architecture="small_cnn", crop=28, seed=0, **args):
    torch.manual_seed(seed)
    spec = ModelSpec(architecture, [f"c{i}" for i in range(10)], Preprocessing(crop, crop), args)
    return model_package.build(spec).eval(), spec


def _batches(crop, count=4, size=16, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 3, crop, crop, generator=generator) for _ in range(count)]


def test_the_recorded_ranges_rebuild_exactly_the_calibrated_model():
    """What convert_fx makes of the calibrated histograms is what serving makes of model.json's numbers."""
    model, _ = _model()
    batches = _batches(28)
    ranges, seen = quantized.calibrate(model, batches, 28, images=40)
    assert seen == 40 and len(ranges) > 3
    watching = quantized.observed(model, 28, HistogramObserver)
    with torch.inference_mode():
        for batch in batches:
            watching(batch)
        calibrated = convert_fx(watching)
    every_image, _ = quantized.calibrate(model, batches, 28, images=64)
    assert every_image != ranges  # 40 images give other ranges: the rebuilt model follows the numbers it gets
    rebuilt = quantized.build(model, json.loads(json.dumps(every_image)), 28)
    probe = torch.randn(8, 3, 28, 28)
    with torch.inference_mode():
        assert torch.equal(rebuilt(probe), calibrated(probe))
    assert next(model.parameters()).dtype == torch.float32  # the fp32 model is untouched


@pytest.mark.parametrize("architecture, crop, args", [
    ("small_cnn", 28, {}), ("resnet_small", 32, {}), ("wrn28_10", 32, {"depth": 10, "widen": 1}), ("resnet50", 64, {}),
])
def test_every_architecture_quantizes_and_stays_close_to_fp32(architecture, crop, args):
    model, _ = _model(architecture, crop, **args)
    ranges, _ = quantized.calibrate(model, _batches(crop), crop)
    int8 = precision.prepare(model, precision.INT8, graph=True, int8={"ranges": ranges}, crop=crop)
    probe = _batches(crop, count=1, size=4, seed=2)[0]
    with torch.inference_mode():
        full = model(probe)
    low = precision.run(int8, probe)
    assert low.shape == full.shape and low.dtype == torch.float32
    assert int8.graph, "graph mode traced the int8 model"
    assert (low - full).abs().max() <= 0.1 * full.abs().max() + 1e-3


def test_ranges_that_do_not_fit_the_model_are_refused():
    model, _ = _model()
    ranges, _ = quantized.calibrate(model, _batches(28), 28)
    with pytest.raises(quantized.QuantizationError, match=f"records {len(ranges) - 1} activation ranges"):
        quantized.build(model, ranges[:-1], 28)


def test_the_int8_agreement_is_measured_on_the_cpu_against_fp32():
    model, _ = _model(seed=3)
    with torch.inference_mode():
        final = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        final.weight.mul_(1000)  # margins far beyond int8's rounding: the measurement is of the model
    ranges, _ = quantized.calibrate(model, _batches(28), 28)
    images = torch.randn(48, 3, 28, 28)
    with torch.inference_mode():
        labels = model(images).argmax(1)
    int8 = precision.prepare(model, precision.INT8, int8={"ranges": ranges}, crop=28)
    found = precision.agreement(model, DataLoader(TensorDataset(images, labels), batch_size=16), CPU, low=int8,
                                limit=40)
    assert found["dtype"] == "int8" and found["images"] == 40 and found["fp32_accuracy"] == 1.0
    assert found["agreement"] >= 0.95 and found["accuracy"] == found["agreement"]


def test_a_model_that_fx_cannot_trace_is_named_not_crashed():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x  # data-dependent control flow

    with pytest.raises(quantized.QuantizationError, match="TraceError|symbolically traced"):
        quantized.calibrate(Branchy(), _batches(8), 8)


@pytest.fixture
def native(monkeypatch):
    def set_native(value: bool):
        monkeypatch.setattr(precision, "native_bf16", lambda device: value)
    return set_native


GOOD, POOR = {"agreement": 0.998, "images": 5000}, {"agreement": 0.99, "images": 5000}


def test_auto_takes_int8_on_a_cpu_without_native_bf16_when_it_agrees(native):
    native(False)
    chosen = precision.choose("auto", CPU, GOOD, 0.995, {**GOOD, "agreement": 0.997})
    assert chosen.dtype == precision.INT8 and "no native bf16" in chosen.reason and "99.70% of 5000" in chosen.reason
    native(True)
    assert precision.choose("auto", CPU, GOOD, 0.995, GOOD).dtype == torch.bfloat16  # bf16 first where native
    assert precision.choose("auto", CPU, POOR, 0.995, GOOD).dtype == precision.INT8  # bf16 refused, int8 not


def test_the_guard_refuses_int8_below_the_bar_never_measured_or_off_the_cpu(native):
    native(False)
    below = precision.choose("auto", CPU, GOOD, 0.995, POOR)
    assert below.dtype == torch.float32 and "int8 agreed with fp32 on 99.00% of 5000 images, below" in below.reason
    unmeasured = precision.choose("auto", CPU, GOOD, 0.995, {})
    assert unmeasured.dtype == torch.float32 and "no measured int8 agreement" in unmeasured.reason
    gpu = precision.choose("auto", torch.device("cuda"), POOR, 0.995, GOOD)
    assert gpu.dtype == torch.float32 and "int8" not in gpu.reason
    asked = precision.choose("int8", torch.device("cuda"), GOOD, 0.995, GOOD)
    assert asked.dtype == torch.float32 and "runs on the CPU only" in asked.reason
    missing = precision.choose("int8", CPU, GOOD, 0.995, {})
    assert missing.dtype == torch.float32 and "has none" in missing.reason
    assert precision.choose("int8", CPU, GOOD, 0.995, POOR).dtype == precision.INT8  # asked for: auto's guard


def _package(tmp_path, int8: dict):
    model, spec = _model()
    spec = ModelSpec(spec.architecture, spec.class_names, spec.preprocessing, int8=int8)
    model_package.save(model, spec, tmp_path)
    return tmp_path


def test_the_classifier_serves_int8_from_model_json_and_falls_back_on_ranges_that_do_not_fit(tmp_path, native):
    model, _ = _model()
    ranges, seen = quantized.calibrate(model, _batches(28), 28)
    record = {"dtype": "int8", "images": 300, "agreement": 0.999, "fp32_accuracy": 0.8, "accuracy": 0.8,
              "device": "cpu", "split": "valid", "calibration_images": seen, "ranges": ranges}
    path = _package(tmp_path / "good", record)
    assert load_spec(path).int8 == record
    native(False)
    fast = Classifier.load(str(path), CPU, "auto", 0.995, graph=True)
    assert fast.model.dtype == precision.INT8 and fast.precision.reason.startswith("int8: ")
    reference = Classifier.load(str(path), CPU)
    batch = torch.randn(6, 3, 28, 28)
    assert torch.allclose(reference.probabilities(batch), fast.probabilities(batch), atol=0.05)

    short = _package(tmp_path / "short", {**record, "ranges": ranges[:-1]})
    fallback = Classifier.load(str(short), CPU, "int8", 0.995)
    assert fallback.model.dtype == torch.float32 and "does not fit this model" in fallback.precision.reason


@pytest.mark.parametrize("int8, says", [
    ({"agreement": 0.99, "images": 3}, "ranges must be a non-empty list"),
    ({"agreement": 0.99, "images": 3, "ranges": [[0.0, 1.0], [2.0, 1.0]]}, "min <= max"),
    ({"agreement": 0.99, "images": 3, "ranges": [[0.0, 1.0], [0.0, "1"]]}, "finite"),
    ({"agreement": 0.99, "images": 3, "ranges": [[0.0, 1.0, 2.0]]}, "pairs"),
    ({"agreement": 2, "images": 3, "ranges": [[0.0, 1.0]]}, "agreement"),
    ({"images": 3, "ranges": [[0.0, 1.0]]}, "agreement"),
    ([1, 2], "must be JSON objects"),
])
def test_an_int8_record_that_cannot_rebuild_the_model_is_refused_at_load(tmp_path, int8, says):
    path = _package(tmp_path, {})
    document = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**document, "int8": int8}))
    with pytest.raises(ModelPackageError, match=says):
        load_spec(path)
