"""The fast path, guarded by accuracy: the training job records how bf16 and int8 agree with fp32,
and `serve` (BYOC_PRECISION=auto) serves bf16 only where the CPU has it natively and that agreement
clears BYOC_PRECISION_MIN_AGREEMENT, else int8 where its agreement does; the log says which and why,
and whether the CPU runs the model in graph mode (BYOC_CPU_GRAPH)."""
import json
import shutil
import time

import pytest

from byoc import precision
from support import label_of, post_image, start_serving

pytestmark = pytest.mark.docker


def test_the_training_job_records_the_bf16_agreement_in_model_json(trained):
    record = json.loads((trained.opt_ml / "model/model.json").read_text())["precision"]
    metrics = json.loads((trained.opt_ml / "output/data/metrics.json").read_text())
    assert record["split"] == "valid" and record["images"] == 300 and record["dtype"] == "bf16"  # 30 a class
    assert 0.9 <= record["agreement"] <= 1 and record == metrics["precision"]
    # The fp32 figure is the shipped (best validated) weights' validation accuracy, measured again.
    assert record["fp32_accuracy"] == pytest.approx(metrics["model"]["valid_acc"], abs=2 / 300)
    assert "bf16 against fp32 on 300 valid images: agreement" in trained.logs


def test_the_training_job_records_the_int8_agreement_and_ranges_in_model_json(trained):
    record = json.loads((trained.opt_ml / "model/model.json").read_text())["int8"]
    metrics = json.loads((trained.opt_ml / "output/data/metrics.json").read_text())
    assert record["split"] == "valid" and record["images"] == 300 and record["dtype"] == "int8"
    assert record["calibration_images"] == 512  # of the 5,000 training images
    assert 0.9 <= record["agreement"] <= 1 and record["fp32_accuracy"] == metrics["precision"]["fp32_accuracy"]
    assert len(record["ranges"]) > 3 and all(low <= high for low, high in record["ranges"])
    assert metrics["int8"] == {key: value for key, value in record.items() if key != "ranges"}
    assert "int8 against fp32 on 300 valid images: agreement" in trained.logs


def _with_agreement(trained, tmp_path, agreement: float):
    """The trained model, with both measured agreements set to `agreement`."""
    model = tmp_path / f"model-{agreement}"
    shutil.copytree(trained.opt_ml / "model", model)
    spec = json.loads((model / "model.json").read_text())
    spec["precision"]["agreement"] = spec["int8"]["agreement"] = agreement
    (model / "model.json").write_text(json.dumps(spec))
    return model


def _precision_line(container) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = [line for line in container.logs().decode(errors="replace").splitlines() if "; precision " in line]
        if lines:
            return lines[-1]
        time.sleep(0.3)
    raise AssertionError(container.logs().decode(errors="replace")[-3000:])


@pytest.mark.parametrize("agreement, environment, serves", [
    (1.0, {}, "the fast path"),  # bf16 where the CPU has it natively, else int8
    (0.99, {}, "fp32"),  # below the default 99.5 %
    (0.999, {"BYOC_PRECISION_MIN_AGREEMENT": "99.95"}, "fp32"),
    (0.5, {"BYOC_PRECISION": "bf16"}, "bf16"),  # asked for: the guard is auto's
    (0.5, {"BYOC_PRECISION": "int8"}, "int8"),
    (1.0, {"BYOC_CPU_GRAPH": "eager"}, "the fast path"),
])
def test_auto_serves_the_fast_path_only_where_it_agrees(docker_client, trained, small_data, tmp_path, agreement,
                                                        environment, serves):
    native = precision.cpu_has_bf16()  # the container sees this host's CPU
    if serves == "the fast path":
        serves = "bf16" if native else "int8"
    endpoint = start_serving(docker_client, _with_agreement(trained, tmp_path, agreement), environment=environment)
    try:
        line = _precision_line(endpoint.container)
        assert f"; precision {serves}" in line or f"; precision BYOC_PRECISION={serves}" in line, line
        mode = "eager" if environment.get("BYOC_CPU_GRAPH") == "eager" else "graph mode (oneDNN)"
        assert line.endswith(f"; {mode}"), line  # the CPU's graph mode unless turned off (byoc.cpu_graph)
        if serves == "fp32":
            assert "below BYOC_PRECISION_MIN_AGREEMENT" in line and f"{agreement:.2%}" in line, line
        folders = sorted((small_data / "test").iterdir())
        images = [next(folder.iterdir()) for folder in folders]
        answers = [post_image(f"{endpoint.url}/invocations", image) for image in images]
        assert all(a.status_code == 200 for a in answers), [(a.status_code, a.text[:200]) for a in answers]
        right = sum(a.json()["predictions"][0]["label"] == label_of(f) for a, f in zip(answers, folders))
        assert right >= 6  # a trained model in either precision: well above chance (1 of 10)
    finally:
        endpoint.container.remove(force=True)
